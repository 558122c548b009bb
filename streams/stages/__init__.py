"""One module per stage of a worker: what each agent does with a batch.

Plain Python over a producer and a delivery tracker; Faust appears only in ``app``,
which wires these stages to agents. Each stage can be driven without a broker
(see ``driftline.streams.testing``).
"""
