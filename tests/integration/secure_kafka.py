"""A secured Apache Kafka for tests: a throwaway CA, SASL_SSL clients per principal,
driftline deployed under the ACL table, and `driftline worker` processes per role."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from driftline.core.settings import Settings, load_settings
from driftline.streams.control.identity import create_actor
from driftline.streams.embedded.kafka_local import REPO_ROOT, KafkaBroker, install, java_path
from driftline.streams.embedded.processes import free_port, spawn_child, stop_child
from driftline.streams.kafka.acls import acl_bindings
from driftline.streams.kafka.provision import provision
from driftline.streams.kafka.topics import Topics
from tests.integration.conftest import WorkerProcess

# The administrator: a super user, created when the broker's storage is formatted.
ADMIN = "driftline-admin"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls(directory: Path) -> tuple[Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it.

    Returns (the CA certificate, the server's PEM key store: PKCS#8 key + chain)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("driftline test CA"))
        .issuer_name(_name("driftline test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    keystore = directory / "broker.pem"
    keystore.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + server.public_bytes(serialization.Encoding.PEM)
        + ca.public_bytes(serialization.Encoding.PEM)
    )
    keystore.chmod(0o600)
    return ca_file, keystore


@dataclass
class SecureKafka:
    """A SASL_SSL broker, its CA, and a password per principal of the ACL table."""

    broker: KafkaBroker
    ca_file: Path
    passwords: dict[str, str]  # user -> password

    @property
    def bootstrap(self) -> str:
        return self.broker.secure_bootstrap

    def client_config(self, user: str, password: str | None = None) -> dict[str, str]:
        """librdkafka settings for ``user`` on the SASL_SSL listener."""
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "sasl_ssl",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": password if password is not None else self.passwords[user],
            "ssl.ca.location": str(self.ca_file),
        }

    def env(self, role: str, **extra: str) -> dict[str, str]:
        """The DRIFTLINE_KAFKA_* settings of role ``role``'s principal."""
        user = f"driftline-{role}" if role != "admin" else ADMIN
        return {
            "DRIFTLINE_KAFKA_BOOTSTRAP": self.bootstrap,
            "DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "DRIFTLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "DRIFTLINE_KAFKA_SASL_USERNAME": user,
            "DRIFTLINE_KAFKA_SASL_PASSWORD": self.passwords[user],
            "DRIFTLINE_KAFKA_SSL_CAFILE": str(self.ca_file),
        } | extra

    def log_tail(self, lines: int = 60) -> str:
        return self.broker.log_tail(lines)


@dataclass
class Deployment:
    """driftline on the secure broker: its prefix, ACLs and data dir, provisioned."""

    kafka: SecureKafka
    prefix: str
    data_dir: Path
    base_env: dict[str, str]

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    def env(self, role: str, **extra: str) -> dict[str, str]:
        return self.base_env | self.kafka.env(role) | extra

    def settings(self, role: str, **extra: str) -> Settings:
        saved = dict(os.environ)
        os.environ.update(self.env(role, **extra))
        try:
            return load_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)


def deploy(kafka: SecureKafka, data_dir: Path, *, command: bool = False) -> Deployment:
    """ACLs from the table for a fresh prefix, created by the administrator; the topics,
    created by the provisioner principal; signing keys for alice, bob and the policy.

    With ``command``, as an operator would: the ACLs by running ``infra/kafka/acls.sh``
    (through Kafka's own kafka-acls tool), so for its prefix, ``driftline.`` (once per
    broker), and the topics by `python -m driftline.streams.kafka.provision`."""
    prefix = "driftline." if command else f"z{uuid.uuid4().hex[:8]}."
    base_env = {
        "DRIFTLINE_KAFKA_TOPIC_PREFIX": prefix,
        "DRIFTLINE_KAFKA_PARTITIONS": "2",
        "DRIFTLINE_DATA_DIR": str(data_dir),
        "DRIFTLINE_CLICKHOUSE_FLUSH_INTERVAL_S": "0.2",
        "DRIFTLINE_WORKER_SESSION_TIMEOUT_S": "6",
        "DRIFTLINE_WORKER_CHECKPOINT_INTERVAL_S": "1",
    }
    found = Deployment(kafka, prefix, data_dir, base_env)
    admin = AdminClient(kafka.client_config(ADMIN))
    if command:
        run_acls_script(kafka, data_dir / "acls")
        # The script made exactly the table's ACLs: nothing missing, nothing more.
        everything = AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY,
            None, None, AclOperation.ANY, AclPermissionType.ANY,
        )  # fmt: skip
        made = {b for b in admin.describe_acls(everything).result(30) if b.name.startswith(prefix)}
        assert made == set(acl_bindings(prefix)), made ^ set(acl_bindings(prefix))
    else:
        for future in admin.create_acls(acl_bindings(prefix)).values():
            future.result(30)
    provisioner = found.settings("provisioner")
    every_topic = found.topics.all() + found.topics.internal()
    if command:
        done = subprocess.run(
            [sys.executable, "-m", "driftline.streams.kafka.provision"],
            env=os.environ | found.env("provisioner"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert all(name in done.stdout for name in every_topic), done.stdout
    else:
        assert set(provision(provisioner)) == set(every_topic)
    # Two people, so promotions pass the four-eyes rule, and the policy's signing key.
    create_actor(provisioner, "alice", ["data-scientist"])
    create_actor(provisioner, "bob", ["approver"])
    create_actor(provisioner, "policy", ["policy"])
    return found


ACLS_SCRIPT = REPO_ROOT / "infra" / "kafka" / "acls.sh"
ACL_BATCH = Path(__file__).with_name("java") / "AclBatch.java"


def run_acls_script(kafka: SecureKafka, workdir: Path) -> str:
    """Run ``infra/kafka/acls.sh`` as the administrator, as its header says, with Kafka's
    own kafka-acls tool (``AclCommand``, from the Maven cache) doing every ``acl`` line:
    its ``KAFKA_ACLS`` is a shim that records each invocation, and one JVM runs them all
    (a JVM per line would take minutes here). Returns the tool's output."""
    workdir.mkdir(parents=True, exist_ok=True)
    password = kafka.passwords[ADMIN]
    admin_properties = workdir / "admin.properties"
    admin_properties.write_text(
        "security.protocol=SASL_SSL\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{password}";\n'
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={kafka.ca_file}\n"
    )
    invocations = workdir / "invocations"
    shim = workdir / "kafka-acls"
    shim.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do printf \'%s\\n\' "$arg"; done >> "$ACL_INVOCATIONS"\n'
        'echo >> "$ACL_INVOCATIONS"\n'
    )
    shim.chmod(0o755)
    env = os.environ | {
        "BOOTSTRAP": kafka.bootstrap,
        "COMMAND_CONFIG": str(admin_properties),
        "KAFKA_ACLS": str(shim),
        "ACL_INVOCATIONS": str(invocations),
    }
    script = subprocess.run(
        ["sh", str(ACLS_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )
    assert script.returncode == 0, script.stdout + script.stderr
    tool = subprocess.run(
        [java_path(), "-cp", f"{install()}/*", str(ACL_BATCH), str(invocations)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tool.returncode == 0, tool.stdout[-4000:] + tool.stderr[-4000:]
    lines = sum(line.startswith("acl ") for line in ACLS_SCRIPT.read_text().splitlines())
    assert f"AclBatch: {lines} kafka-acls invocation(s) done" in tool.stdout, tool.stdout[-2000:]
    return tool.stdout


@dataclass
class Worker(WorkerProcess):
    """A worker process running one role as that role's principal."""

    role: str = ""

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return f"--- {self.role} worker\n" + super().log_tail(lines)


def start_workers(
    deployment: Deployment, roles: list[str], log_dir: Path, timeout_s: float = 90.0
) -> dict[str, Worker]:
    """`driftline worker` per role, each as that role's principal, started side by side."""
    workers = {}
    for role in roles:
        port = free_port()
        log_file = log_dir / f"worker-{role}.log"
        env = os.environ | deployment.env(
            role, DRIFTLINE_WORKER_ROLES=role, DRIFTLINE_WORKER_WEB_PORT=str(port)
        )
        proc = spawn_child(
            [sys.executable, "-m", "driftline.streams.cli", "worker"], env=env, log_file=log_file
        )
        workers[role] = Worker(proc, f"http://127.0.0.1:{port}", log_file, role=role)
    deadline = time.monotonic() + timeout_s
    waiting = dict(workers)
    try:
        while waiting:
            for role, worker in list(waiting.items()):
                assert worker.proc.poll() is None, f"worker exited early:\n{worker.log_tail()}"
                try:
                    if worker.get("/driftline/health/").get("ready"):
                        del waiting[role]
                except OSError:
                    pass
            if time.monotonic() > deadline:
                tails = "\n".join(w.log_tail() for w in waiting.values())
                raise AssertionError(f"workers not ready in {timeout_s:.0f}s:\n{tails}")
            time.sleep(0.2)
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def stop_workers(workers: dict[str, Worker]) -> None:
    for worker in workers.values():
        if worker.proc.poll() is None:
            worker.proc.terminate()
    for worker in workers.values():
        stop_child(worker.proc, grace_s=30, name=f"{worker.role} worker")
