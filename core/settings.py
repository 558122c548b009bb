"""Typed, validated settings, read from the environment in one place.

Long on purpose: every section is here, so the variables, their defaults and their checks
read as one list (the README's configuration table is this file).

Every setting is ``DRIFTLINE_<SECTION>_<NAME>`` (for example
``DRIFTLINE_KAFKA_BOOTSTRAP``), optionally preceded by a TOML file named by
``DRIFTLINE_CONFIG`` whose tables are the sections (``[kafka]``,
``[clickhouse]`` ...). Environment variables win over the file. A bad value
stops start-up with a :class:`ConfigError` that names the variable and the
accepted values.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

from driftline.core.errors import ConfigError

ENV_PREFIX = "DRIFTLINE_"
CONFIG_FILE_ENV = "DRIFTLINE_CONFIG"
WORKER_ROLES = frozenset({"inference", "lineage", "registry", "policy"})
# Topics that expire by time; the lifecycle, commands and audit-checkpoints topics never do.
STREAM_TOPIC_KINDS = (
    "features",
    "predictions",
    "outcomes",
    "drift",
    "deadletter",
    "outcome-join",
    "drift-summaries",
    "served-features",
)


# ClickHouse tables that hold personal data (entity ids, feature values, raw records): the
# tables a time-to-live and `driftline data erase` cover. The audit log, its checkpoints
# and the drift table hold none.
PERSONAL_TABLES = (
    "predictions",
    "features",
    "outcomes",
    "deadletters",
    "replay_predictions",
    "served_features",
)
# Kafka settings that became retention settings, and their new names.
_MOVED_TO_RETENTION = {"retention_ms": "topic_default_ms", "topic_retention_ms": "topic_ms"}
DAY_MS = 24 * 3600 * 1000


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """Where the brokers are and how to talk to them (both aiokafka and librdkafka)."""

    bootstrap: str | None = Field(
        None, description="host:port[,host:port]; unset means the embedded Tansu broker"
    )
    topic_prefix: str = Field("driftline.", pattern=r"^[A-Za-z0-9._-]*$")
    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=16)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    message_max_bytes: int = Field(
        1_000_000,
        ge=16 * 1024,
        le=1024**3,
        description=(
            "largest message a driftline producer sends (librdkafka message.max.bytes); keep "
            "it at or below the broker's message.max.bytes and the topics' max.message.bytes"
        ),
    )

    local_broker: Literal["tansu", "kafka"] = Field(
        "tansu",
        description=(
            "the broker `driftline up` starts when no bootstrap is set: tansu (in memory, "
            "nothing to install) or kafka (Apache Kafka from the Maven cache, data kept in "
            "the data dir, so the stack survives a restart; needs java)"
        ),
    )
    allow_finite_lifecycle_retention: bool = Field(
        False,
        description=(
            "start even when the lifecycle, commands or audit-checkpoints topic would "
            "expire records: the registry and the audit anchor are projections of them"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _retention_moved(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in _MOVED_TO_RETENTION.items():
                if old in data:
                    raise ValueError(
                        f"{ENV_PREFIX}KAFKA_{old.upper()} moved to the retention settings: "
                        f"use {ENV_PREFIX}RETENTION_{new.upper()} (or {new} in the [retention] "
                        "table of the config file)"
                    )
        return data

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                f"{ENV_PREFIX}KAFKA_{name.upper()}"
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                )
        return self

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def librdkafka_config(self, bootstrap: str) -> dict[str, Any]:
        """The confluent-kafka (librdkafka) client dict for these settings."""
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        for key, path in (
            ("ssl.ca.location", self.ssl_cafile),
            ("ssl.certificate.location", self.ssl_certfile),
            ("ssl.key.location", self.ssl_keyfile),
        ):
            if path is not None:
                config[key] = str(path)
        return config

    def aiokafka_config(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (Faust builds its credentials from these)."""
        config: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.uses_tls:
            config["ssl_context"] = self.ssl_context()
        return config

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        if self.ssl_certfile:
            context.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return context


class RetentionSettings(_Section):
    """How long data is kept, in one place: the stream topics' ``retention.ms`` and the
    time-to-live of the ClickHouse tables that hold personal data (see README,
    "Retention and erasure")."""

    topic_default_ms: int = Field(
        7 * DAY_MS,
        ge=60_000,
        description=(
            "time retention of the stream topics (features, predictions, outcomes, drift, "
            "deadletter and the workers' join and summaries topics), set when driftline "
            "creates them; it bounds how long a record of an erased entity stays on them"
        ),
    )
    topic_ms: dict[str, int] = Field(
        default_factory=dict,
        description=(
            'per-kind overrides as JSON, e.g. {"deadletter": 2592000000}; the lifecycle, '
            "commands and audit-checkpoints topics are never given one"
        ),
    )
    table_default_ms: int = Field(
        0,
        ge=0,
        description=(
            "time-to-live of every personal-data table (predictions, features, outcomes, "
            "deadletters, replay_predictions), counted from when the row was stored; "
            "0 keeps rows until they are erased"
        ),
    )
    table_ms: dict[str, int] = Field(
        default_factory=dict,
        description='per-table overrides as JSON, e.g. {"features": 2592000000}; 0 = no TTL',
    )

    @field_validator("topic_ms")
    @classmethod
    def _topic_kinds_known(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(STREAM_TOPIC_KINDS))
        if unknown:
            raise ValueError(
                f"no time retention for {', '.join(unknown)}: expected topic kinds among "
                f"{', '.join(STREAM_TOPIC_KINDS)}"
            )
        short = {kind: ms for kind, ms in value.items() if ms < 60_000}
        if short:
            raise ValueError(f"retention under a minute (60000 ms) for {short}")
        return value

    @field_validator("table_ms")
    @classmethod
    def _tables_known(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(PERSONAL_TABLES))
        if unknown:
            raise ValueError(
                f"no time-to-live for {', '.join(unknown)}: expected tables among "
                f"{', '.join(PERSONAL_TABLES)} (the audit log is kept for ever)"
            )
        bad = {table: ms for table, ms in value.items() if ms != 0 and ms < 60_000}
        if bad:
            raise ValueError(f"time-to-live must be 0 (none) or at least 60000 ms: {bad}")
        return value

    @field_validator("table_default_ms")
    @classmethod
    def _default_ttl(cls, value: int) -> int:
        if value != 0 and value < 60_000:
            raise ValueError("time-to-live must be 0 (none) or at least 60000 ms")
        return value

    def topic_for(self, kind: str) -> int:
        """``retention.ms`` of a stream topic kind."""
        return self.topic_ms.get(kind, self.topic_default_ms)

    def table_ttls(self) -> dict[str, int | None]:
        """Each personal-data table's time-to-live in whole seconds, None for none."""
        ttls: dict[str, int | None] = {}
        for table in PERSONAL_TABLES:
            ms = self.table_ms.get(table, self.table_default_ms)
            ttls[table] = ms // 1000 if ms else None
        return ttls


class ClickHouseSettings(_Section):
    # A secret: it may hold the password. Settings print it as **********, and errors
    # name only its scheme.
    dsn: SecretStr | None = Field(
        None,
        description="chdb:///path, http(s)://user:pass@host:port; unset means chDB in the data dir",
    )
    database: str = Field("driftline", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    region: str | None = Field(
        None,
        description=(
            "region the ClickHouse store's data lives in; with DRIFTLINE_DATA_ALLOWED_REGIONS "
            "set, a worker with the lineage role refuses a store outside them"
        ),
    )
    erasure_dsn: SecretStr | None = Field(
        None,
        description=(
            "http(s)://user:pass@host:port of the account that may delete personal-data rows "
            "(driftline_eraser in infra/clickhouse/users.xml); unset = the dsn's own account"
        ),
    )
    flush_rows: int = Field(
        5000, ge=1, description="most messages the lineage consumer stores in one batch"
    )
    flush_bytes: int = Field(
        16 * 1024**2,
        ge=1024,
        le=1024**3,
        description=(
            "about the most message bytes the lineage consumer decodes and stores in one "
            "batch (frames are thousands of rows each, so a count alone does not bound it)"
        ),
    )
    flush_interval_s: float = Field(0.5, gt=0)
    feature_sample_rate: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="share of entities whose feature rows are logged to the features table",
    )

    @model_validator(mode="after")
    def _known_scheme(self) -> ClickHouseSettings:
        dsn = self.dsn.get_secret_value() if self.dsn is not None else None
        if dsn is not None and not dsn.startswith(("chdb:", "http://", "https://")):
            scheme = dsn.partition(":")[0] if ":" in dsn else "none"
            raise ValueError(
                f"the dsn's scheme ({scheme[:16]!r}) is not chdb, http or https; use "
                "chdb:///abs/path, http://user:pass@host:8123 or https://user:pass@host:8443"
            )
        erasure = self.erasure_dsn.get_secret_value() if self.erasure_dsn is not None else None
        if erasure is not None and not erasure.startswith(("http://", "https://")):
            raise ValueError(
                f"{ENV_PREFIX}CLICKHOUSE_ERASURE_DSN is for a ClickHouse server "
                "(http(s)://user:pass@host:port); an embedded chDB store erases through its "
                "own dsn"
            )
        return self


class SchemaSettings(_Section):
    registry_url: str | None = Field(
        None, pattern=r"^https?://", description="Confluent-API schema registry; unset = pinned ids"
    )
    registry_username: str | None = None
    registry_password: SecretStr | None = None


class TelemetrySettings(_Section):
    otlp_endpoint: str | None = Field(
        None, pattern=r"^https?://", description="OTLP/HTTP collector; unset = no export"
    )
    service_name: str = "driftline"
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class FeaturesSettings(_Section):
    repo: Path | None = Field(
        None,
        description="Feast repository (its feature_store.yaml) that models registered with "
        "--feature-service are enriched from; unset = no feature store",
    )
    region: str | None = Field(
        None,
        description="region the feature store's data lives in (checked against "
        "DRIFTLINE_DATA_ALLOWED_REGIONS at start-up)",
    )
    served_sample_rate: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="share of entities whose completed (enriched) rows the scoring worker "
        "logs to served_features for the training-serving skew check; 0 = none",
    )
    skew_interval_s: float = Field(
        60.0, gt=0, description="how often the lineage role checks served rows for skew"
    )
    skew_rows: int = Field(2000, ge=1, description="served rows compared per model and check")
    skew_max_rate: float = Field(
        0.01,
        ge=0.0,
        lt=1.0,
        description="share of a feature's compared rows that may differ from the offline "
        "store before a training_serving_skew DriftEvent is published",
    )
    skew_min_rows: int = Field(20, ge=1, description="fewer compared rows decide nothing")


class DataSettings(_Section):
    dir: Path = Field(Path(".driftline"), description="artifacts, chDB store, stack file")
    region: str | None = Field(None, description="region of this artifact store")
    allowed_regions: str | None = Field(
        None, description="comma-separated regions artifacts may be stored in; unset = any"
    )
    artifact_key_file: Path | None = Field(
        None,
        description="AES-256 key (base64) to encrypt artifacts at rest; or $DRIFTLINE_ARTIFACT_KEY",
    )
    erasure_key: SecretStr | None = Field(
        None,
        description=(
            "secret of the keyed hash (HMAC-SHA256) that names an erased entity in the audit "
            "log instead of its id; `driftline data erase` refuses to run without it"
        ),
    )

    @field_validator("erasure_key")
    @classmethod
    def _erasure_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError(
                "must be at least 32 characters: a short key lets anyone who reads the audit "
                "log test guessed ids against it (make one with `openssl rand -base64 32`)"
            )
        return value

    @property
    def allowed_region_set(self) -> frozenset[str] | None:
        if self.allowed_regions is None:
            return None
        return frozenset(r.strip() for r in self.allowed_regions.split(",") if r.strip())

    @property
    def stack_file(self) -> Path:
        return self.dir / "stack.json"

    @property
    def artifacts(self) -> Path:
        return self.dir / "artifacts"

    @property
    def clickhouse(self) -> Path:
        return self.dir / "clickhouse"


class RegistrySettings(_Section):
    """Who may change models: the roles file the registry agent enforces, and the CLI's keys."""

    roles_file: Path | None = Field(
        None, description="TOML roles file; unset = <data dir>/roles.toml kept by `keys new`"
    )
    key_dir: Path | None = Field(None, description="private keys; unset = <data dir>/keys")
    command_timeout_s: float = Field(30.0, gt=0, le=600)


class WorkerSettings(_Section):
    batch_size: int = Field(1000, ge=1, le=100_000)
    batch_window_ms: int = Field(
        50,
        ge=1,
        le=60_000,
        description="longest a batch keeps gathering while more events are queued",
    )
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535, description="0 picks a free port")
    roles: str = Field(
        "inference,lineage,registry,policy",
        description="comma-separated: inference, lineage, registry, policy",
    )
    ort_threads: int = Field(1, ge=1, le=256)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where models run: auto = CUDA when a GPU, CuPy and the provider exist"
    )
    device_id: int = Field(0, ge=0, le=64, description="CUDA device ordinal")
    fetch_max_wait_ms: int = Field(
        20, ge=1, le=10_000, description="longest a fetch waits at the broker for new records"
    )
    output_linger_ms: float = Field(
        1.0,
        ge=0,
        le=60_000,
        description=(
            "librdkafka linger.ms of the worker's producer (predictions, dead letters, "
            "lifecycle): 1 gathers a scored batch into one request per partition; 0 sends "
            "its first record alone and the rest in many small requests, which costs the "
            "worker and the broker CPU (100-300 ms stalls at 2,000 records/s on 2 cores); "
            "raise it to trade latency for fewer, larger requests"
        ),
    )
    event_time_max_ahead_s: float = Field(
        86_400.0,
        ge=0,
        le=10 * 365 * 86_400,
        description=(
            "how far past the worker's clock an event_time may be; later ones (and negative "
            "ones) go to the dead-letter topic as invalid_event_time"
        ),
    )
    fetch_max_bytes: int = Field(
        1024**2,
        ge=1024,
        le=256 * 1024**2,
        description="most bytes one fetch returns per partition (Faust consumer_max_fetch_size)",
    )
    checkpoint_interval_s: float = Field(
        10.0, gt=0, le=86_400, description="how often the lineage role signs audit chain heads"
    )
    require_signed_artifacts: bool = Field(
        True, description="load only artifacts signed by a key in the roles file"
    )
    max_in_flight: int = Field(
        4, ge=1, le=64, description="scored batches awaiting delivery before consuming pauses"
    )
    features_consumer: Literal["kafka", "faust"] = Field(
        "kafka",
        description=(
            "what reads the features topic: kafka = confluent-kafka batches in a service of "
            "the worker (5-7x faster on single records); faust = a Faust agent, one Event "
            "per record (the earlier path, kept for comparison)"
        ),
    )
    outcomes_consumer: Literal["faust", "kafka"] = Field(
        "kafka",
        description=(
            "what routes the outcomes topic to the join: kafka = confluent-kafka batches in a "
            "service of the worker, as for features, in a consumer group of its own (<the "
            "worker's group>.outcomes, which first starts where the Faust agent left off); "
            "faust = a Faust agent, one Event per outcome (the earlier path; it fell behind "
            "at 2,000 outcomes/s on a busy worker)"
        ),
    )
    session_timeout_s: float = Field(
        15.0,
        ge=3,
        le=300,
        description="consumer-group session timeout: how fast a dead worker's partitions move",
    )

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: str) -> str:
        roles = {part.strip() for part in value.split(",") if part.strip()}
        unknown = roles - WORKER_ROLES
        if unknown or not roles:
            raise ValueError(
                f"unknown role(s) {sorted(unknown)}; use a comma-separated subset of "
                f"{sorted(WORKER_ROLES)}"
            )
        return ",".join(sorted(roles))

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(self.roles.split(","))


class DriftSettings(_Section):
    """Drift detection in the scoring worker (see README, "Drift detection")."""

    enabled: bool = Field(True, description="run the drift stage and outcomes join after scoring")
    window: int = Field(1000, ge=20, le=1_000_000, description="rows per tumbling window")
    tests: str = Field("ks,psi", description="input window tests: ks, psi")
    method: Literal["bh", "bonferroni", "none"] = Field(
        "bh", description="multiplicity control across features"
    )
    alpha: float = Field(
        0.001, gt=0, lt=1, description="false-discovery (bh) or family-wise (bonferroni) rate"
    )
    k: int = Field(2, ge=1, le=64, description="windows out of n that must be significant")
    n: int = Field(3, ge=1, le=64, description="debounce span in windows; re-arm after n clean")
    psi_min: float = Field(0.1, ge=0, description="PSI below this never alarms")
    baseline_rows: int = Field(
        2000, ge=20, description="served rows used as reference for scores (and unprofiled inputs)"
    )
    error_detectors: str = Field("adwin,hddm_a", description="River detectors on outcome errors")
    decision_threshold: float = Field(0.5, gt=0, lt=1, description="score >= this is positive")
    # CuPy wins only on large updates (H100: 5M rows/s at 64k-row updates, 0.13M at
    # 2k-row frames, against 1.8-2M on one CPU core), so the CPU is the default.
    device: Literal["auto", "cpu", "cuda"] = Field(
        "cpu", description="window tests on NumPy (cpu) or CuPy (cuda); auto follows the worker"
    )
    outcome_wait_s: float = Field(
        600.0, gt=0, le=30 * 86_400, description="how long a prediction waits for its outcome"
    )
    max_pending_predictions: int = Field(
        1_000_000, ge=1, description="predictions held for the outcome join before the oldest go"
    )
    sample_every: int = Field(
        16, ge=1, le=1024, description="window tests see one row in this many of each frame"
    )

    @model_validator(mode="after")
    def _check(self) -> DriftSettings:
        if self.k > self.n:
            raise ValueError(
                f"DRIFTLINE_DRIFT_K ({self.k}) must be <= DRIFTLINE_DRIFT_N ({self.n})"
            )
        if self.baseline_rows < self.window:
            raise ValueError(
                f"DRIFTLINE_DRIFT_BASELINE_ROWS ({self.baseline_rows}) must be >= "
                f"DRIFTLINE_DRIFT_WINDOW ({self.window})"
            )
        return self


class AuditSettings(_Section):
    """Who may sign audit checkpoints, and how late one may be (see README, "The audit log")."""

    writer_key: str = Field(
        "lineage-writer",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$",
        description=(
            "name of the only key allowed to sign audit checkpoints: the lineage role signs "
            "with <key dir>/<name>.key and verification trusts <key dir>/<name>.pub alone"
        ),
    )
    grace_s: float = Field(
        30.0,
        ge=0,
        le=86_400,
        description=(
            "how late past DRIFTLINE_WORKER_CHECKPOINT_INTERVAL_S a checkpoint may be before "
            "uncovered rows are reported as unverified_tail"
        ),
    )


class PolicySettings(_Section):
    """The promotion and rollback policy (see README, "Promotion and rollback")."""

    file: Path | None = Field(
        None, description="policy TOML (gates, drift rules); unset = <data dir>/policy.toml"
    )
    actor: str = Field("policy", description="actor whose key signs the policy's commands")
    interval_s: float = Field(
        5.0, gt=0, le=3600, description="how often canaries and experiments are evaluated"
    )


class Settings(BaseSettings):
    """All of driftline's configuration; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    # Not "schema", which would shadow pydantic's BaseModel.schema(); the aliases keep the
    # names users write: DRIFTLINE_SCHEMA_* variables and a [schema] table.
    schema_registry: SchemaSettings = Field(
        SchemaSettings(), validation_alias=AliasChoices("schema", f"{ENV_PREFIX.lower()}schema")
    )
    telemetry: TelemetrySettings = TelemetrySettings()
    data: DataSettings = DataSettings()
    worker: WorkerSettings = WorkerSettings()
    registry: RegistrySettings = RegistrySettings()
    drift: DriftSettings = DriftSettings()
    policy: PolicySettings = PolicySettings()
    audit: AuditSettings = AuditSettings()
    retention: RetentionSettings = RetentionSettings()
    features: FeaturesSettings = FeaturesSettings()

    @property
    def roles_file(self) -> Path:
        return self.registry.roles_file or self.data.dir / "roles.toml"

    @property
    def policy_file(self) -> Path:
        return self.policy.file or self.data.dir / "policy.toml"

    @property
    def key_dir(self) -> Path:
        return self.registry.key_dir or self.data.dir / "keys"

    @property
    def development_policy(self) -> bool:
        """No roles file configured: `keys new` maintains one in the data dir."""
        return self.registry.roles_file is None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def clickhouse_dsn(self) -> str:
        """The DSN, password included: give it to a client, and never print it (see
        ``driftline.lineage.store.clickhouse.redact_dsn``)."""
        if self.clickhouse.dsn:
            return self.clickhouse.dsn.get_secret_value()
        return f"chdb://{self.data.clickhouse.resolve()}"

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb:")


def _env_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p).removeprefix(ENV_PREFIX.lower()) for p in loc if not isinstance(p, int)]
    if parts and parts[0] == "schema_registry":
        parts[0] = "schema"
    return ENV_PREFIX + "_".join(parts[:2]).upper()


def _secret_names() -> set[str]:
    """The variables whose values an error must not repeat: every SecretStr setting."""
    names = set()
    for section_name, section in Settings.model_fields.items():
        model = section.annotation
        for name, field in getattr(model, "model_fields", {}).items():
            if "SecretStr" in str(field.annotation):
                names.add(_env_name((section_name, name)))
    return names


def load_settings(**overrides: Any) -> Settings:
    """Read and validate every setting, or raise ConfigError naming each bad one."""
    config_file = os.environ.get(CONFIG_FILE_ENV)
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"{CONFIG_FILE_ENV}={config_file!r} is not a readable file")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        secrets = _secret_names()
        for error in exc.errors():
            name = _env_name(error["loc"])
            value = error.get("input")
            if isinstance(value, dict):
                shown = ""
            else:
                shown = "=<hidden>" if name in secrets else f"={value!r}"
            problems.append(f"  {name}{shown}: {error['msg']}")
        raise ConfigError("invalid driftline configuration:\n" + "\n".join(problems)) from exc
    except SettingsError as exc:
        raise ConfigError(f"invalid driftline configuration: {exc}") from exc
    except OSError as exc:  # unreadable or malformed config file
        raise ConfigError(f"cannot read {CONFIG_FILE_ENV}={config_file!r}: {exc}") from exc
