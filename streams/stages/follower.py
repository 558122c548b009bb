"""Every worker follows the whole lifecycle topic to keep its routing tables current.

Not a consumer group: each worker must see every partition, from the beginning,
because the registry is a projection of the topic. After each event the worker
compares the registry's traffic split (champion, challengers, canary, shadows)
with the table it serves; versions it lacks are loaded (and digest- and
signature-checked) off the event loop, then the new table is swapped in
between two batches. A version that fails to load is left out and its share
goes to the champion.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from driftline.core.settings import KafkaSettings
from driftline.drift.profile import ReferenceProfile
from driftline.features.enrichment import EnrichmentPolicy
from driftline.inference import LoadedModel, ModelLoadError, Router
from driftline.inference.device import Device
from driftline.inference.routing import Arm, RoutingTable
from driftline.lineage.artifacts.metadata import ArtifactMetadata
from driftline.lineage.artifacts.store import ArtifactStore
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import InvalidRecord, LineageError, SignatureMissing
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.registry.traffic import BASIS_POINTS, TrafficSplit
from driftline.lineage.registry.versions import ModelVersion
from driftline.schemas import DecodeError, SchemaCodec
from driftline.streams.stages.roles_source import RolesSource
from driftline.streams.stats import WorkerStats

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
        roles: RolesSource | None = None,
        require_signature: bool = True,
        device: Device | None = None,
    ) -> None:
        self._device = device
        # (model, version) -> loaded model, for every version some table uses.
        self._models: dict[tuple[str, int], LoadedModel] = {}
        self._refused: set[tuple[str, int]] = set()
        # (model, version) -> training reference profile, for the drift stage.
        self._references: dict[tuple[str, int], ReferenceProfile | None] = {}
        # (model, version) -> its feature service and missing-row rule, if registered with one.
        self._policies: dict[tuple[str, int], EnrichmentPolicy | None] = {}
        self._roles = roles
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
        await self.sync_routes(event.model)

    async def sync_routes(self, name: str) -> None:
        """Make the served table of ``name`` match the registry's traffic split."""
        split = self.registry.traffic(name)
        current = self._router.table(name)
        if current is None and not split.served and not split.shadows:
            return
        if current is not None and _describe(current) == _describe_split(split):
            return
        wanted = [arm.version for arm in split.served] + list(split.shadows)
        for version in wanted:
            key = (name, version)
            if key not in self._models and key not in self._refused:
                model = await self.load_version(self.registry.get(name, version))
                if model is None:
                    self._refused.add(key)
                else:
                    self._models[key] = model
        table = self._build_table(split, current)
        previous = self._router.set_table(table)
        if table.champion is not None:
            self._models[(name, table.champion.version)] = table.champion
            wanted.append(table.champion.version)
        for key in [k for k in self._models if k[0] == name and k[1] not in wanted]:
            del self._models[key]  # no table uses it any more
        log.info(
            "now serving %s: %s, experiment %s (was %s)",
            name,
            table.versions(),
            table.experiment_id,
            None if previous is None else previous.versions(),
        )

    def _build_table(self, split: TrafficSplit, current: RoutingTable | None) -> RoutingTable:
        """The table for ``split`` from the loaded versions.

        A champion that failed to load is not served: the champion already
        serving (if any) keeps serving, so a bad artifact never stops traffic.
        """
        name = split.model
        arms = [
            Arm(a.arm, self._models[(name, a.version)], a.traffic_bp)
            for a in split.served
            if a.arm != "champion" and (name, a.version) in self._models
        ]
        champion = next((a for a in split.served if a.arm == "champion"), None)
        serving = None
        if champion is not None and (name, champion.version) in self._models:
            serving = self._models[(name, champion.version)]
        elif champion is not None and current is not None and current.champion is not None:
            serving = current.champion
            log.warning(
                "%s v%d cannot be served; v%d keeps serving as champion",
                name,
                champion.version,
                serving.version,
            )
        if serving is not None:
            rest = BASIS_POINTS - sum(arm.traffic_bp for arm in arms)
            arms.append(Arm("champion", serving, rest))
        shadows = tuple(self._models[(name, v)] for v in split.shadows if (name, v) in self._models)
        return RoutingTable(name, tuple(arms), shadows, split.experiment_id)

    def _signer_key(self, version: ModelVersion):
        """The public key that must have signed this artifact, or None when not required."""
        if not self._require_signature:
            return None
        signer = version.signed_by
        roles = self._roles.current() if self._roles else None
        if not signer or roles is None or signer not in roles.keyring:
            raise SignatureMissing(
                f"{version.name} v{version.version} has no artifact signature from a key in the "
                f"roles file (signed_by={signer!r}); register it with `driftline model register`"
            )
        return roles.keyring[signer].public_key

    async def load_version(self, version: ModelVersion) -> LoadedModel | None:
        """Load and verify one version off the event loop; None (logged, counted) if refused."""

        def load() -> LoadedModel:
            data = self._artifacts.read_verified(
                version.artifact, version.digest, public_key=self._signer_key(version)
            )
            metadata = self._read_metadata(version)
            key = (version.name, version.version)
            self._references[key] = None if metadata is None else metadata.profile()
            features = None if metadata is None else metadata.features
            self._policies[key] = (
                None if features is None else EnrichmentPolicy.from_metadata(features)
            )
            return LoadedModel.load(
                data,
                name=version.name,
                version=version.version,
                expected_digest=version.digest,
                intra_op_threads=self._ort_threads,
                device=self._device,
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
            return None
        return model

    def reference(self, name: str, version: int) -> ReferenceProfile | None:
        """The training profile a version was registered with, if any (drift stage input)."""
        return self._references.get((name, version))

    def policy(self, name: str, version: int) -> EnrichmentPolicy | None:
        """The enrichment policy a version was registered with (scoring stage input)."""
        return self._policies.get((name, version))

    def _read_metadata(self, version: ModelVersion) -> ArtifactMetadata | None:
        try:
            metadata = self._artifacts.metadata(
                version.digest, expected_sha256=version.metadata_sha256
            )
        except LineageError as exc:
            log.warning(
                "%s v%d: no usable metadata (%s); drift compares inputs with a serving baseline",
                version.name,
                version.version,
                exc,
            )
            return None
        return metadata


def _describe(table: RoutingTable) -> tuple:
    served = tuple((a.name, a.model.version, a.traffic_bp) for a in table.served)
    return served, tuple(m.version for m in table.shadows), table.experiment_id


def _describe_split(split: TrafficSplit) -> tuple:
    served = tuple((a.arm, a.version, a.traffic_bp) for a in split.served)
    return served, split.shadows, split.experiment_id
