"""The audit log: a sha256 hash chain per model in ClickHouse, and everything that checks it.

- ``chain``: the writer and the chain walk;
- ``checkpoints``: signed heads of the chains;
- ``sources``: rows compared with the Kafka records they came from;
- ``verify``: every check together (``driftline audit verify``);
- ``tail``: the writer's continuous check of what it has just written;
- ``alarms``: the signed ``raise_alarm`` command the writer sends when a chain breaks.
"""
