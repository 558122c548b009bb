"""Errors raised by the streaming layer (broker, topics, embedded stack, CLI)."""

from driftline.core.errors import DriftlineError


class StreamsError(DriftlineError):
    """Base class for errors in streams/."""


class BrokerUnavailable(StreamsError):
    """No Kafka broker answered at the configured or recorded address."""


class BrokerNotInstalled(StreamsError):
    """A local Apache Kafka cannot run here: Java, Maven or the pinned jars are missing."""


class TopicMismatch(StreamsError):
    """A topic exists with a partition count other than the configured one."""


class TopicMisconfigured(StreamsError):
    """An existing topic's config breaks the rule for its kind (see kafka/topic_config.py)."""


class RoleGroupConflict(StreamsError):
    """Another active worker group runs a role this worker would run (streams.role_groups)."""


class StackNotRunning(StreamsError):
    """A command needs the embedded stack (``driftline up``) and none is recorded."""


class CommandRejected(StreamsError):
    """The registry agent refused a command; the refusal is in the audit log too."""
