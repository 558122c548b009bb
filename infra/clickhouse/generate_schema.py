"""Regenerate schema.sql from lineage/store/tables.sql.

Run ``python infra/clickhouse/generate_schema.py``.
"""

from pathlib import Path

from driftline.lineage.store.clickhouse import server_schema

if __name__ == "__main__":
    target = Path(__file__).with_name("schema.sql")
    target.write_text(server_schema("driftline"), encoding="utf-8")
    print(f"wrote {target}")
