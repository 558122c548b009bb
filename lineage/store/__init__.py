"""ClickHouse: the client, the tables, and the sinks that fill them.

- ``clickhouse``: opening a client (chDB or a server), the DDL in ``tables.sql``;
- ``sinks``, ``frame_sinks``, ``drift_sinks``: buffered inserts of predictions, dead
  letters, frames, drift and lifecycle rows;
- ``arrow_insert``: column inserts through Arrow.
"""
