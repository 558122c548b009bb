"""Audit-log writes with hashing into chDB, against a plain insert of the same rows.

Both run in this process on the same engine: the plain insert is the ceiling, the
audit writer adds the per-model hash chain, the redelivery check and the head
bookkeeping. Usage: python bench/bench_audit.py [EVENTS] [MODELS]
"""

from __future__ import annotations

import tempfile
import time

import clickhouse_connect

from bench.arguments import Count, read_counts
from driftline.lineage.audit.chain import COLUMNS, AuditLogWriter
from driftline.lineage.events import registered
from driftline.lineage.store.clickhouse import create_tables


def main(argv: list[str] | None = None) -> None:
    args = read_counts("bench.bench_audit", __doc__, argv,
                       Count("rows", 100_000, "audit events to write"),
                       Count("models", 100, "models the events are spread over"))  # fmt: skip
    n, models = args.rows, args.models
    batch = 5_000
    client = clickhouse_connect.get_client(dsn=f"chdb://{tempfile.mkdtemp(prefix='audit-bench-')}")
    create_tables(client, "bench")
    create_tables(client, "plain")
    events = [
        registered(
            f"model-{i % models}",
            i // models + 1,
            "bench",
            {"digest": f"{i:064x}", "artifact": f"sha256/{i:064x}.onnx"},
        )
        for i in range(n)
    ]
    items = [(event, "driftline.lifecycle", i % 4, i) for i, event in enumerate(events)]

    writer = AuditLogWriter(client, "bench")
    started = time.perf_counter()
    for start in range(0, n, batch):
        writer.write(items[start : start + batch])
    audited = n / (time.perf_counter() - started)

    # The ceiling: the very same rows (hashes included), inserted without the writer's work.
    rows = client.query(f"SELECT {', '.join(COLUMNS)} FROM bench.audit_log ORDER BY model, seq")
    table = list(rows.result_columns)
    started = time.perf_counter()
    for start in range(0, n, batch):
        client.insert(
            "plain.audit_log",
            [column[start : start + batch] for column in table],
            column_names=COLUMNS,
            column_oriented=True,
        )
    plain = n / (time.perf_counter() - started)

    print(f"{n:,} lifecycle events over {models} models, batches of {batch:,}, chDB")
    print(f"{'plain insert of the same rows':<36}{plain:>12,.0f} events/s")
    print(
        f"{'audit writer (hash chain + dedup)':<36}{audited:>12,.0f} events/s"
        f"{audited / plain:>8.0%} of plain"
    )
    print(f"target >= 50,000 events/s: {'met' if audited >= 50_000 else 'MISSED'}")


if __name__ == "__main__":
    main()
