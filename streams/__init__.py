"""driftline streams: everything that touches Kafka, Faust or a terminal.

One subpackage per role, each importing only those after it in this list:

- ``cli``: the `driftline` command line;
- ``demo``: `driftline demo` and the load generator;
- ``control``: what operators drive (signed commands, keys, gate runs, store reads);
- ``app``: the Faust wiring, the runtime of a worker, its HTTP API;
- ``embedded``: the local stack (processes, Tansu, a local Apache Kafka, `driftline up`);
- ``stages``: one module per stage of a worker, Faust-free;
- ``kafka``: clients, topics, producing, delivery, tracing, the features consumer.

``exceptions``, ``stats`` and ``artifact_store`` are shared; ``testing`` drives the
stages without a broker.
"""
