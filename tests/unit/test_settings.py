"""Settings: typed sections from DRIFTLINE_* variables and a TOML file; clear errors."""

from __future__ import annotations

import pytest

from driftline.core.errors import ConfigError
from driftline.core.settings import load_settings
from driftline.streams.kafka.clients import worker_output_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("DRIFTLINE_"):
            monkeypatch.delenv(name)


def test_defaults_mean_the_embedded_stack():
    settings = load_settings()
    assert settings.kafka.bootstrap is None
    assert settings.embedded_clickhouse
    assert settings.clickhouse_dsn.startswith("chdb:///")
    assert settings.kafka.topic_prefix == "driftline."
    assert settings.worker.role_set == {"inference", "lineage", "registry", "policy"}


def test_environment_variables_fill_each_section(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_DSN", "https://writer:pw@ch:8443")
    monkeypatch.setenv("DRIFTLINE_SCHEMA_REGISTRY_URL", "http://registry:8081")
    monkeypatch.setenv("DRIFTLINE_TELEMETRY_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("DRIFTLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTLINE_WORKER_ROLES", "inference")
    settings = load_settings()
    assert settings.kafka.bootstrap == "kafka-1:9092,kafka-2:9092"
    assert settings.clickhouse_dsn == "https://writer:pw@ch:8443"
    assert not settings.embedded_clickhouse
    assert settings.schema_registry.registry_url == "http://registry:8081"
    assert settings.telemetry.otlp_endpoint == "http://collector:4318"
    assert settings.data.dir == tmp_path
    assert settings.worker.role_set == {"inference"}


def test_config_file_is_read_and_environment_wins(monkeypatch, tmp_path):
    config = tmp_path / "driftline.toml"
    config.write_text('[kafka]\nbootstrap = "k:9092"\npartitions = 8\n[worker]\nbatch_size = 64\n')
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(config))
    monkeypatch.setenv("DRIFTLINE_KAFKA_PARTITIONS", "3")
    settings = load_settings()
    assert (settings.kafka.bootstrap, settings.kafka.partitions) == ("k:9092", 3)
    assert settings.worker.batch_size == 64


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "DRIFTLINE_KAFKA_SECURITY_PROTOCOL",
            "TLS",
            "DRIFTLINE_KAFKA_SECURITY_PROTOCOL='TLS': Input should be 'PLAINTEXT', 'SSL', "
            "'SASL_PLAINTEXT' or 'SASL_SSL'",
        ),
        ("DRIFTLINE_KAFKA_PARTITIONS", "0", "DRIFTLINE_KAFKA_PARTITIONS='0'"),
        ("DRIFTLINE_WORKER_BATCH_SIZE", "lots", "DRIFTLINE_WORKER_BATCH_SIZE='lots'"),
        (
            "DRIFTLINE_WORKER_ROLES",
            "inference,training",
            "unknown role(s) ['training']; use a comma-separated subset of "
            "['inference', 'lineage', 'policy', 'registry']",
        ),
        ("DRIFTLINE_CLICKHOUSE_DSN", "mysql://db", "scheme ('mysql') is not chdb, http or https"),
        ("DRIFTLINE_SCHEMA_REGISTRY_URL", "registry:8081", "DRIFTLINE_SCHEMA_REGISTRY_URL"),
        ("DRIFTLINE_TELEMETRY_LOG_LEVEL", "LOUD", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ],
)
def test_bad_values_name_the_setting_and_accepted_values(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    assert expected in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DRIFTLINE_CLICKHOUSE_DSN", "mysql://reader:hunter2@db:3306"),
        ("DRIFTLINE_CLICKHOUSE_DSN", "hunter2"),
        ("DRIFTLINE_CLICKHOUSE_DSN", "https://reader:hunter2@ch:8443"),
        ("DRIFTLINE_KAFKA_SASL_PASSWORD", "hunter2"),
        ("DRIFTLINE_SCHEMA_REGISTRY_PASSWORD", "hunter2"),
    ],
)
def test_no_message_or_repr_repeats_a_secret(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    # A setting that fails beside the secret, so the error lists every input it saw.
    monkeypatch.setenv("DRIFTLINE_KAFKA_PARTITIONS", "0")
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    assert "hunter2" not in str(excinfo.value)
    monkeypatch.delenv("DRIFTLINE_KAFKA_PARTITIONS")
    try:
        settings = load_settings()
    except ConfigError as exc:  # the unknown schemes
        assert "hunter2" not in str(exc)
        assert name in str(exc) or "clickhouse" in str(exc).lower()
    else:
        assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


def test_every_secret_setting_is_known_as_secret():
    from driftline.core.settings import _secret_names

    assert {
        "DRIFTLINE_CLICKHOUSE_DSN",
        "DRIFTLINE_KAFKA_SASL_PASSWORD",
        "DRIFTLINE_SCHEMA_REGISTRY_PASSWORD",
    } <= _secret_names()


def test_the_schema_section_keeps_its_names(monkeypatch, tmp_path):
    config = tmp_path / "driftline.toml"
    config.write_text('[schema]\nregistry_url = "http://from-file:8081"\n')
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(config))
    assert load_settings().schema_registry.registry_url == "http://from-file:8081"
    monkeypatch.setenv("DRIFTLINE_SCHEMA_REGISTRY_URL", "http://from-env:8081")
    assert load_settings().schema_registry.registry_url == "http://from-env:8081"


def test_sasl_needs_its_credentials(monkeypatch):
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    with pytest.raises(
        ConfigError, match="DRIFTLINE_KAFKA_SASL_USERNAME, DRIFTLINE_KAFKA_SASL_PASSWORD"
    ):
        load_settings()


def test_missing_config_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="nope.toml"):
        load_settings()


def test_security_settings_reach_both_kafka_clients(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", "s3cret")
    kafka = load_settings().kafka
    assert "s3cret" not in repr(kafka)  # SecretStr keeps it out of logs
    assert kafka.librdkafka_config("b:9092") == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "sasl_plaintext",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "svc",
        "sasl.password": "s3cret",
    }
    assert kafka.aiokafka_config() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret",
    }
    from driftline.streams.kafka.clients import faust_credentials

    credentials = faust_credentials(kafka)
    assert (credentials.username, credentials.password) == ("svc", "s3cret")
    assert credentials.ssl_context is None


def test_the_workers_producer_gathers_a_scored_batch_unless_told_otherwise(monkeypatch):
    """linger.ms 0 cost the worker's librdkafka threads 1.7x the CPU and stalled single
    records on 2 cores (bench.bench_output_linger); the default gathers a batch's burst."""
    assert worker_output_config(load_settings(), "127.0.0.1:9092")["linger.ms"] == 1.0
    monkeypatch.setenv("DRIFTLINE_WORKER_OUTPUT_LINGER_MS", "0")
    assert worker_output_config(load_settings(), "127.0.0.1:9092")["linger.ms"] == 0.0
