"""Where a running embedded stack lives, so commands in another terminal find it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from driftline.core.settings import Settings
from driftline.streams.exceptions import StackNotRunning


@dataclass(frozen=True)
class StackInfo:
    bootstrap: str
    worker_url: str
    clickhouse_dsn: str
    topic_prefix: str
    supervisor_pid: int

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> StackInfo | None:
        """The recorded stack, or None when none is recorded or its supervisor is gone."""
        try:
            info = cls(**json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None
        try:
            os.kill(info.supervisor_pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return info


def resolve_bootstrap(settings: Settings) -> str:
    """DRIFTLINE_KAFKA_BOOTSTRAP if set, else the running embedded stack's broker."""
    if settings.kafka.bootstrap:
        return settings.kafka.bootstrap
    info = StackInfo.read(settings.data.stack_file)
    if info is None:
        raise StackNotRunning(
            "no Kafka broker configured: set DRIFTLINE_KAFKA_BOOTSTRAP=host:port, or start the "
            f"embedded stack with `driftline up` (looked for {settings.data.stack_file})"
        )
    return info.bootstrap


def running_stack(settings: Settings) -> StackInfo | None:
    return StackInfo.read(settings.data.stack_file)
