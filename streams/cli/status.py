"""`driftline status` on the terminal: one screen, a section per question an operator asks."""

from __future__ import annotations

import time

from rich.table import Table

from driftline.streams.cli.common import console
from driftline.streams.control.status import WorkerStatus


def _since(epoch_s: float | None) -> str:
    if not epoch_s:
        return "never"
    return f"{max(0.0, time.time() - epoch_s):.0f}s ago"


def render(status: WorkerStatus) -> None:
    stats = status.stats
    health = "[green]ready[/]" if status.ready else "[yellow]catching up on the lifecycle[/]"
    console.print(
        f"[bold]worker[/] {status.url}  {health}  roles: {', '.join(status.roles) or '-'}  "
        f"up {stats.get('uptime_s', 0):.0f}s"
    )
    dead = sum(stats.get("dead_letters", {}).values())
    console.print(
        f"records in {stats.get('records_in', 0):,}  predictions out "
        f"{stats.get('predictions_out', 0):,}  dead letters {dead:,}  "
        f"last batch {_since(stats.get('last_batch_at'))}"
    )
    if status.lag:
        behind = ", ".join(f"{where} {int(n):,}" for where, n in sorted(status.lag.items()))
        console.print(f"consumer lag: {behind}")
    elif "inference" in status.roles:
        console.print("consumer lag: not reported yet (librdkafka reports every 5 s)")

    if status.models is not None:
        served = Table(title="served models", title_justify="left")
        for column in ("model", "arm", "version", "share", "experiment"):
            served.add_column(column)
        for model, info in sorted(status.models.items()):
            for arm in info.get("arms", []):
                served.add_row(
                    model,
                    arm["arm"],
                    f"v{arm['version']}",
                    f"{arm['traffic_bp'] / 100:.2f}%",
                    info.get("experiment_id") or "",
                )
        console.print(served if served.row_count else "served models: none yet")

    if status.decisions is not None:
        decided = status.decisions.get("decisions") or {}
        if decided:
            table = Table(title="policy: latest decisions", title_justify="left")
            table.add_column("model")
            table.add_column("decision")
            for model, decision in sorted(decided.items()):
                table.add_row(model, str(decision))
            console.print(table)
        else:
            console.print("policy: no decisions yet")

    if status.lifecycle is not None:
        table = Table(title="recent lifecycle events", title_justify="left")
        for column in ("time", "model", "event", "version", "actor"):
            table.add_column(column)
        for row in status.lifecycle:
            table.add_row(*("" if value is None else str(value) for value in row))
        console.print(table if table.row_count else "lifecycle: no events yet")
    for note in status.notes:
        console.print(f"[yellow]{note}[/]")
