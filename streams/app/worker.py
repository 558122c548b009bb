"""`driftline worker`: one Faust worker process."""

from __future__ import annotations

import gc
import logging

from driftline.core.settings import Settings
from driftline.streams.app.faust_app import create_app
from driftline.streams.app.role_groups import refuse_overlapping_role_groups
from driftline.streams.app.shutdown import BoundedWorker
from driftline.streams.embedded.processes import free_port
from driftline.streams.embedded.stackfile import resolve_bootstrap
from driftline.streams.kafka.provision import prepare_topics
from driftline.streams.kafka.topics import Topics
from driftline.streams.stages.residency import (
    refuse_feature_store_outside_regions,
    refuse_store_outside_regions,
)

log = logging.getLogger(__name__)


def tune_gc() -> None:
    """Fewer, larger young-generation collections: a worker allocates a few short-lived
    objects per event, and the default threshold (700) collects hundreds of times a second.
    Long-lived start-up objects are frozen out of collection altogether."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def run_worker(settings: Settings) -> None:
    bootstrap = resolve_bootstrap(settings)
    created = prepare_topics(settings, bootstrap)
    if created:
        log.info("created topics %s", ", ".join(created))
    if "lineage" in settings.worker.role_set:
        refuse_store_outside_regions(settings, bootstrap)  # before the store is opened
    refuse_feature_store_outside_regions(
        settings, bootstrap, audited="lineage" in settings.worker.role_set
    )
    refuse_overlapping_role_groups(
        settings.kafka.librdkafka_config(bootstrap),
        Topics(settings.kafka.topic_prefix),
        settings.worker.role_set,
    )
    web_port = settings.worker.web_port or free_port(settings.worker.web_host)
    app, runtime = create_app(settings, bootstrap, web_port=web_port)
    log.info(
        "worker %s: roles %s, broker %s, HTTP API http://%s:%d/driftline/",
        app.conf.id,
        settings.worker.roles,
        bootstrap,
        settings.worker.web_host,
        web_port,
    )
    tune_gc()
    worker = BoundedWorker(app, loglevel=settings.telemetry.log_level, override_logging=False)
    try:
        worker.execute_from_commandline()
    finally:
        runtime.close()
