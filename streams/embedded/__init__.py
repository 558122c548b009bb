"""The local stack: child processes, Tansu, a local Apache Kafka, and `driftline up`."""
