"""The local Apache Kafka's JVM options: what a broker sharing the workers' cores needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftline.core.errors import ConfigError
from driftline.streams.embedded.kafka_local import jvm_options


def _last(options: list[str], prefix: str) -> str:
    """The flag HotSpot uses: the last of its name."""
    return [o for o in options if o.startswith(prefix)][-1]


def test_a_local_broker_compiles_with_c1_only_and_logs_its_gc(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("KAFKA_OPTS", raising=False)
    options = jvm_options("512m", tmp_path / "gc.log")
    # C2's compiler threads stole up to a core from the co-located worker for minutes.
    assert _last(options, "-XX:TieredStopAtLevel=") == "-XX:TieredStopAtLevel=1"
    assert _last(options, "-Xmx") == "-Xmx512m"
    assert any(o.startswith(f"-Xlog:gc:file={tmp_path / 'gc.log'}:") for o in options)


def test_kafka_opts_come_last_so_an_operator_can_undo_any_default(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("KAFKA_OPTS", "-XX:TieredStopAtLevel=4  -Xmx2g -Dname='a b'")
    options = jvm_options("512m", tmp_path / "gc.log")
    assert _last(options, "-XX:TieredStopAtLevel=") == "-XX:TieredStopAtLevel=4"
    assert _last(options, "-Xmx") == "-Xmx2g"
    assert options[-1] == "-Dname=a b"  # split as a shell would


def test_kafka_opts_that_cannot_be_split_name_the_variable(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("KAFKA_OPTS", "-Dname='unclosed")
    with pytest.raises(ConfigError, match=r"KAFKA_OPTS=.*cannot be split.*quote it"):
        jvm_options("512m", tmp_path / "gc.log")
