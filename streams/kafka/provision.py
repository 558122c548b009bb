"""`driftline topics` (or `python -m driftline.streams.kafka.provision`): create driftline's
topics up front, as the provisioner.

On a secured cluster no worker may create topics (``streams/kafka/acls.py``): the
provisioner principal creates every topic, table changelogs and the workers' internal
topics included, each with its config (``streams/kafka/topic_config.py``), and checks them,
before any worker starts. Workers then only describe them. Settings are the usual
``DRIFTLINE_*`` ones, with the provisioner's SASL user and password.
"""

from __future__ import annotations

import sys

from driftline.core.errors import DriftlineError
from driftline.core.settings import Settings, load_settings
from driftline.streams.kafka.topic_config import check_topic_configs, topic_configs
from driftline.streams.kafka.topics import Topics, ensure_topics


def prepare_topics(settings: Settings, bootstrap: str) -> list[str]:
    """Create missing topics with their configs, then check every topic's config."""
    topics = Topics(settings.kafka.topic_prefix)
    admin_config = settings.kafka.librdkafka_config(bootstrap)
    created = ensure_topics(
        admin_config,
        topics.all() + topics.internal(),
        settings.kafka.partitions,
        settings.kafka.replication_factor,
        configs=topic_configs(topics, settings.retention),
    )
    check_topic_configs(admin_config, topics, settings.kafka, settings.retention)
    return created


def provision(settings: Settings) -> list[str]:
    """Create the missing topics with their configs and check every topic's config;
    returns the names created."""
    if not settings.kafka.bootstrap:
        raise DriftlineError("set DRIFTLINE_KAFKA_BOOTSTRAP: topics are provisioned on a cluster")
    return prepare_topics(settings, settings.kafka.bootstrap)


def main() -> int:
    try:
        settings = load_settings()
        created = provision(settings)
    except DriftlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    prefix = settings.kafka.topic_prefix
    print(f"created {', '.join(created)}" if created else f"every {prefix}* topic exists")
    print(f"topic configs checked on {settings.kafka.bootstrap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
