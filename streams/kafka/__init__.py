"""Kafka plumbing: clients, topics and their configs, producing, delivery, tracing.

Nothing here knows a worker role: the stages and the CLI build on it. The features
consumer (``feature_consumer``) is the scoring hot path's own librdkafka reader.
"""
