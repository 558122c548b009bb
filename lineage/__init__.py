"""driftline lineage: what happened to every model, who asked, and whether it may.

Plain Python over dataclasses and clickhouse-connect; no Faust, no Kafka client.
One subpackage per subject, each importing only those before it in this list:

- ``events``, ``exceptions``: the lifecycle event record and the errors, shared by all;
- ``registry``: the event-sourced model registry and its state machine;
- ``trust``: keys, the roles file, signed commands and who may send them;
- ``artifacts``: content-addressed model storage, signatures and metadata;
- ``store``: the ClickHouse client, tables and sinks;
- ``audit``: the hash-chained audit log, its checkpoints and verification;
- ``promotion``: gates, canaries, experiments, drift rules and the policy;
- ``openlineage``: OpenLineage export of the lifecycle.

Import from the modules (``driftline.lineage.registry.model_registry``): the packages
export nothing, so importing one never loads another's dependencies.
"""
