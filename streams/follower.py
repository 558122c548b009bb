"""Every worker follows the whole lifecycle topic to keep its routing table current.

Not a consumer group: each worker must see every partition, from the beginning,
because the registry is a projection of the topic. A promotion loads (and digest-
checks) the new model off the event loop, then swaps it in between two batches.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from driftline.settings import KafkaSettings
from inference import LoadedModel, ModelLoadError, Router
from lineage import (
    ArtifactStore,
    InvalidRecord,
    LifecycleEvent,
    LineageError,
    ModelRegistry,
    ModelVersion,
)
from lineage.exceptions import SignatureMissing
from schemas import DecodeError, SchemaCodec
from streams.policy_source import PolicySource
from streams.stats import WorkerStats

log = logging.getLogger(__name__)


class LifecycleFollower:
    def __init__(
        self,
        *,
        bootstrap: str,
        kafka: KafkaSettings,
        topic: str,
        codec: SchemaCodec,
        registry: ModelRegistry,
        router: Router,
        artifacts: ArtifactStore,
        stats: WorkerStats,
        ort_threads: int = 1,
        policy: PolicySource | None = None,
        require_signature: bool = True,
    ) -> None:
        self._policy = policy
        self._require_signature = require_signature
        self._bootstrap = bootstrap
        self._kafka = kafka
        self._topic = topic
        self._codec = codec
        self.registry = registry
        self._router = router
        self._artifacts = artifacts
        self._stats = stats
        self._ort_threads = ort_threads
        self.caught_up = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap.split(","),
            enable_auto_commit=False,
            group_id=None,
            **self._kafka.aiokafka_config(),
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(self._topic, p) for p in range(self._kafka.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            behind = {tp: end for tp, end in ends.items() if end > 0}
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for record in records:
                        await self._apply(record.value)
                    if tp in behind and records[-1].offset + 1 >= behind[tp]:
                        del behind[tp]
                # Caught up once past the end offsets *and* a poll comes back empty: the
                # embedded broker under-reports end offsets after multi-record batches.
                if not behind and not batches and not self.caught_up.is_set():
                    log.info("lifecycle caught up: serving %s", self._router.loaded())
                    self.caught_up.set()
        finally:
            await consumer.stop()

    async def _apply(self, value: bytes) -> None:
        try:
            event = LifecycleEvent.from_avro(self._codec.decode_as("LifecycleEvent", value))
        except (DecodeError, InvalidRecord) as exc:
            # The lineage consumer dead-letters it; here it simply changes nothing.
            log.warning("skipping undecodable lifecycle event: %s", exc)
            return
        self.registry.apply(event)
        champion = self.registry.champion(event.model)
        serving = self._router.champion(event.model)
        if champion is not None and (serving is None or serving.version != champion.version):
            await self._load(champion)

    def _signer_key(self, version: ModelVersion):
        """The public key that must have signed this artifact, or None when not required."""
        if not self._require_signature:
            return None
        signer = version.signed_by
        policy = self._policy.current() if self._policy else None
        if not signer or policy is None or signer not in policy.keyring:
            raise SignatureMissing(
                f"{version.name} v{version.version} has no artifact signature from a key in the "
                f"roles file (signed_by={signer!r}); register it with `driftline model register`"
            )
        return policy.keyring[signer].public_key

    async def _load(self, version: ModelVersion) -> None:
        def load() -> LoadedModel:
            data = self._artifacts.read_verified(
                version.artifact, version.digest, public_key=self._signer_key(version)
            )
            return LoadedModel.load(
                data,
                name=version.name,
                version=version.version,
                expected_digest=version.digest,
                intra_op_threads=self._ort_threads,
            )

        try:
            model = await asyncio.get_running_loop().run_in_executor(None, load)
        except (ModelLoadError, LineageError) as exc:
            log.error("refusing to serve %s v%d: %s", version.name, version.version, exc)
            self._stats.models_refused.append(
                {
                    "model": version.name,
                    "version": version.version,
                    "reason": str(exc),
                    "at": time.time(),
                }
            )
            return
        previous = self._router.set_champion(model)
        log.info(
            "now serving %s v%d as champion (was %s)",
            model.name,
            model.version,
            f"v{previous.version}" if previous else "none",
        )
