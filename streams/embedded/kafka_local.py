"""A local Apache Kafka in KRaft mode: one broker, or a cluster on loopback, as child processes.

Long on purpose: a local broker's whole life (install from the pinned jars, configure,
format, start, stop, kill) in one place, each step small.

The broker is the jar set that ``infra/kafka/pom.xml`` pins, copied by Maven into
``.cache/kafka-<version>/libs`` (``make kafka``, or
``python -m driftline.streams.embedded.kafka_local install``).
Each node is both broker and controller, listens on free ports of 127.0.0.1 and keeps its
data in the directory it is given, so a node or a whole cluster can be stopped and started
again from its data. Nodes are started like the embedded Tansu broker (``spawn_child``):
they die with the process that started them, even when it is killed with SIGKILL.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from driftline.core.errors import ConfigError
from driftline.streams.embedded.processes import free_port, spawn_child, stop_child
from driftline.streams.exceptions import BrokerNotInstalled, BrokerUnavailable

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]  # streams/embedded/ -> the checkout
POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_COMPLETE = ".complete"  # written last: a libs dir without it is a fetch that did not finish


def pinned_version(pom: Path = POM) -> str:
    """The Apache Kafka version ``infra/kafka/pom.xml`` pins (``<kafka.version>``)."""
    if not pom.exists():
        raise BrokerNotInstalled(
            f"{pom} not found: a local Apache Kafka is installed from a driftline source "
            "checkout; run from the repository (git clone), not from an installed wheel"
        )
    found = ET.parse(pom).getroot().find("m:properties/m:kafka.version", _POM_NS)
    if found is None or not (found.text or "").strip():
        raise BrokerNotInstalled(f"{pom} has no <kafka.version> property")
    return found.text.strip()


def _fetched_from(version: str) -> str:
    """What a finished fetch records: the version and the pom's digest, so a changed pom
    (another dependency) fetches again."""
    return f"{version}\n{hashlib.sha256(POM.read_bytes()).hexdigest()}\n"


def kafka_libs(version: str | None = None) -> Path:
    return REPO_ROOT / ".cache" / f"kafka-{version or pinned_version()}" / "libs"


def _require(tool: str, debian_package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerNotInstalled(
            f"`{tool}` not found on PATH: a local Apache Kafka (the integration tests' "
            f"broker) needs Java 17+ and Maven; install {debian_package} "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless maven)"
        )
    return path


def install(version: str | None = None) -> Path:
    """Copy the pinned broker's runtime jars into the cache once; return the libs dir."""
    version = version or pinned_version()
    libs = kafka_libs(version)
    marker = _fetched_from(version)
    done_marker = libs / _COMPLETE
    if done_marker.exists() and done_marker.read_text() == marker:
        return libs
    _require("java", "openjdk-17-jre-headless")
    mvn = _require("mvn", "maven")
    partial = libs.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"fetching Apache Kafka {version} jars into {libs} (once)", file=sys.stderr)
    done = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise BrokerNotInstalled(
            f"Maven could not fetch Apache Kafka {version} (exit {done.returncode}); "
            f"check network access to the Maven repository and {POM}:\n{tail}"
        )
    (partial / _COMPLETE).write_text(marker)
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    return libs


def java_path() -> str:
    return _require("java", "openjdk-17-jre-headless")


def jvm_options(heap: str, gc_log: Path) -> list[str]:
    """The local broker's JVM options, then the user's ``KAFKA_OPTS``, which win."""
    return [
        f"-Xmx{heap}",
        "-Xss1m",
        # Pauses beside server.log, to tell a GC pause from other stalls.
        f"-Xlog:gc:file={gc_log}:time,uptime:filecount=2,filesize=10M",
        "-Djava.awt.headless=true",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
        # C1 only: a local broker shares its cores with the workers, and C2's compiler
        # threads took up to a core for the first minutes of a workload, stalling a
        # co-located worker for 50-200 ms at a time (README, "Embedded versus production").
        # KAFKA_OPTS=-XX:TieredStopAtLevel=4 undoes it.
        "-XX:TieredStopAtLevel=1",
        # As Kafka's own start scripts take them; last, so they win over the ones above.
        *_kafka_opts(),
    ]


def _kafka_opts() -> list[str]:
    value = os.environ.get("KAFKA_OPTS", "")
    try:
        return shlex.split(value)
    except ValueError as exc:  # an unclosed quote: say which variable, not just shlex's words
        raise ConfigError(
            f"KAFKA_OPTS={value!r} cannot be split into JVM options ({exc}); quote it as a "
            "shell would, e.g. KAFKA_OPTS=\"-XX:TieredStopAtLevel=4 -Dname='a b'\""
        ) from None


def random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64, as Kafka's own Uuid makes them."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids these: they read as command-line flags
            return text


@dataclass(frozen=True)
class BrokerSecurity:
    """A SASL_SSL client listener (SCRAM over TLS) and the StandardAuthorizer for a node.

    The node keeps its PLAINTEXT listener (inter-broker) and its CONTROLLER listener on
    127.0.0.1; clients are meant to use the SASL_SSL one (``KafkaBroker.secure_bootstrap``).
    Connections on the two PLAINTEXT listeners carry no identity: Kafka calls them
    ``User:ANONYMOUS``, and that is who the broker is when it registers with its controller
    and replicates, so ``User:ANONYMOUS`` must be a super user or the node cannot start
    under an authorizer. That makes the PLAINTEXT ports an administrator's door: keep them
    on loopback (as here) or, in production, give the inter-broker and controller listeners
    TLS or SASL of their own and make the brokers' own principal the super user instead.
    """

    # PKCS#8 private key and certificate chain in one PEM file (ssl.keystore.type=PEM).
    keystore_pem: Path
    mechanism: str = "SCRAM-SHA-512"
    # SASL users with every permission (administrators), besides User:ANONYMOUS.
    super_users: tuple[str, ...] = ()
    # user -> password, written into the metadata at format time (StorageTool --add-scram);
    # further users can be added later with the Admin API (AlterUserScramCredentials).
    scram_users: Mapping[str, str] = field(default_factory=dict)

    def server_properties(self) -> dict[str, str]:
        """Entries added to server.properties (the listeners are the node's)."""
        listener = "listener.name.sasl_ssl"
        module = "org.apache.kafka.common.security.scram.ScramLoginModule"
        users = ["User:ANONYMOUS", *(f"User:{name}" for name in self.super_users)]
        return {
            "sasl.enabled.mechanisms": self.mechanism,
            f"{listener}.sasl.enabled.mechanisms": self.mechanism,
            f"{listener}.{self.mechanism.lower()}.sasl.jaas.config": f"{module} required;",
            f"{listener}.ssl.keystore.type": "PEM",
            f"{listener}.ssl.keystore.location": str(self.keystore_pem),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": ";".join(users),
        }

    def format_arguments(self) -> list[str]:
        """StorageTool arguments creating ``scram_users``."""
        arguments = []
        for name, password in self.scram_users.items():
            arguments += ["--add-scram", f"{self.mechanism}=[name={name},password={password}]"]
        return arguments


class KafkaBroker:
    """One KRaft node (broker and controller) on 127.0.0.1, data in ``data_dir``.

    Alone it is a single-node cluster; ``KafkaCluster`` gives several nodes the same
    ``voters`` and ``cluster_id``. ``overrides`` replace or add server.properties entries.
    With ``security``, the node also listens for SASL_SSL clients on ``secure_port``
    (``secure_bootstrap``) and authorizes every request by ACLs.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        node_id: int = 1,
        port: int | None = None,
        controller_port: int | None = None,
        voters: str | None = None,
        cluster_id: str | None = None,
        overrides: dict[str, str] | None = None,
        heap: str = "512m",
        log_file: Path | None = None,
        version: str | None = None,
        security: BrokerSecurity | None = None,
        secure_port: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.node_id = node_id
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.voters = voters or f"{node_id}@127.0.0.1:{self.controller_port}"
        self.cluster_id = cluster_id or random_cluster_id()
        self.overrides = dict(overrides or {})
        self.heap = heap
        self.log_file = log_file or self.data_dir / "server.log"
        self.version = version or pinned_version()
        self.security = security
        self.secure_port = (secure_port or free_port()) if security is not None else None
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def secure_bootstrap(self) -> str:
        """The SASL_SSL listener's address (only with ``security``)."""
        if self.secure_port is None:
            raise ValueError(f"Kafka node {self.node_id} has no SASL_SSL listener")
        return f"127.0.0.1:{self.secure_port}"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    def server_properties(self) -> dict[str, str]:
        nodes = self.voters.count("@")
        replicas = str(min(nodes, 3))
        min_isr = str(min(nodes, 2))
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir / "log"),
            # Production durability on a cluster (RF 3, min ISR 2, no unclean election);
            # a single node can only have RF 1.
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "unclean.leader.election.enable": "false",
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            # Tests start consumer groups all the time: don't wait 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
        }
        return properties | self._security_properties() | self.overrides

    def _security_properties(self) -> dict[str, str]:
        if self.security is None:
            return {}
        secure = f"SASL_SSL://127.0.0.1:{self.secure_port}"
        return self.security.server_properties() | {
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:"
                f"{self.controller_port},{secure}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},{secure}",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
            ),
        }

    def _write_properties(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        self.properties_file.write_text("\n".join(lines) + "\n")

    def _classpath(self) -> str:
        return f"{install(self.version)}/*"

    def _format_command(self) -> list[str] | None:
        """The StorageTool run that formats the log dir, or None if it is formatted already."""
        if (self.data_dir / "log" / "meta.properties").exists():
            return None  # a restart from existing data
        return [
            java_path(),
            "-cp",
            self._classpath(),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(self.properties_file),
            *(self.security.format_arguments() if self.security is not None else []),
        ]

    def launch(self) -> None:
        """Format the data dir if new and start the process; don't wait for it to serve."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self._write_properties()
        command = self._format_command()
        if command is not None:
            _run_formats([(self, command)])
        self._spawn()

    def _spawn(self) -> None:
        self.proc = spawn_child(
            [
                java_path(),
                *jvm_options(self.heap, self.data_dir / "gc.log"),
                "-cp",
                self._classpath(),
                "kafka.Kafka",
                str(self.properties_file),
            ],
            log_file=self.log_file,
        )

    def wait_ready(self, timeout_s: float = 60.0, *, brokers: int = 1) -> None:
        """Block until this node's metadata lists ``brokers`` live brokers."""
        deadline = time.monotonic() + timeout_s
        seen: object = "no answer"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise BrokerUnavailable(
                    f"Apache Kafka node {self.node_id} exited (code {code}) before serving; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            try:
                # log_level 0: refused connections are expected while the broker starts.
                admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
                live = admin.list_topics(timeout=2).brokers
                if len(live) >= brokers:
                    return
                seen = f"{len(live)} of {brokers} brokers"
            except KafkaException as exc:
                seen = exc
            time.sleep(0.2)
        raise BrokerUnavailable(
            f"Apache Kafka node {self.node_id} at {self.bootstrap} not ready in "
            f"{timeout_s:.0f}s ({seen}); log {self.log_file}:\n{self.log_tail()}"
        )

    def start(self, timeout_s: float = 60.0) -> KafkaBroker:
        self.launch()
        try:
            self.wait_ready(timeout_s)
        except BrokerUnavailable:
            self.stop()
            raise
        return self

    def stop(self, grace_s: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after ``grace_s``."""
        if self.proc is not None:
            stop_child(self.proc, grace_s=grace_s, name=f"kafka node {self.node_id}")
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: the crash a fault test wants. The data dir stays for a restart."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_file.exists():
            return "(no log yet)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def _run_formats(jobs: list[tuple[KafkaBroker, list[str]]]) -> None:
    """Run StorageTool formats side by side (a JVM start each) and check them all."""
    # Started from this thread, never a pool: PR_SET_PDEATHSIG follows the starting thread.
    running = [
        (node, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for node, cmd in jobs
    ]
    for node, proc in running:
        output, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise BrokerUnavailable(
                f"formatting {node.data_dir / 'log'} for Apache Kafka node {node.node_id} "
                f"failed (exit {proc.returncode}):\n{output[-3000:]}"
            )


class KafkaCluster:
    """``size`` KRaft nodes on loopback, each broker and controller, sharing one quorum.

    Defaults are production's durability: RF 3, ``min.insync.replicas=2``, unclean
    leader election off. Nodes are numbered from 1; ``kill`` and ``start_node`` make
    the faults, ``stop`` and ``start`` restart the whole cluster from its data dirs.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        size: int = 3,
        overrides: dict[str, str] | None = None,
        heap: str = "384m",
        version: str | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, got size={size}")
        self.data_dir = Path(data_dir)
        controller_ports = {node_id: free_port() for node_id in range(1, size + 1)}
        voters = ",".join(f"{n}@127.0.0.1:{port}" for n, port in controller_ports.items())
        cluster_id = random_cluster_id()
        self.nodes = {
            node_id: KafkaBroker(
                self.data_dir / f"node-{node_id}",
                node_id=node_id,
                controller_port=cport,
                voters=voters,
                cluster_id=cluster_id,
                overrides=overrides,
                heap=heap,
                version=version,
            )
            for node_id, cport in controller_ports.items()
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes.values())

    @property
    def replication_factor(self) -> int:
        """What topics on this cluster should be created with (production's 3 at most)."""
        return min(len(self.nodes), 3)

    def node(self, node_id: int) -> KafkaBroker:
        if node_id not in self.nodes:
            raise KeyError(f"no Kafka node {node_id}; nodes are {sorted(self.nodes)}")
        return self.nodes[node_id]

    def start(self, timeout_s: float = 120.0) -> KafkaCluster:
        """Start every node (a quorum needs a majority up at once) and wait for all."""
        try:
            jobs = []
            for node in self.nodes.values():
                node._write_properties()
                command = node._format_command()
                if command is not None:
                    jobs.append((node, command))
            _run_formats(jobs)
            for node in self.nodes.values():
                node._spawn()
            for node in self.nodes.values():
                node.wait_ready(timeout_s, brokers=len(self.nodes))
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, node_id: int, timeout_s: float = 60.0) -> None:
        """Start one stopped or killed node again from its data dir; wait until it serves."""
        node = self.node(node_id)
        node.launch()
        node.wait_ready(timeout_s, brokers=len(self.nodes))

    def kill(self, node_id: int) -> None:
        self.node(node_id).kill()

    def stop(self, grace_s: float = 30.0, straggler_s: float = 3.0) -> None:
        """Stop all nodes together (one at a time, the last would wait for a lost quorum).

        Even together, once a majority has exited the others wait for a controller
        quorum that is gone: their controlled shutdown cannot finish, and they sat out
        the whole grace (30 s a cluster stop). They get ``straggler_s`` more, then
        SIGKILL; what they acknowledged is in their logs already, which a restart
        recovers (the cluster-restart fault test checks it).
        """
        running = [n for n in self.nodes.values() if n.proc is not None and n.proc.poll() is None]
        for node in running:
            node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        majority_gone_at: float | None = None
        while time.monotonic() < deadline:
            left = [n for n in running if n.proc.poll() is None]
            if not left:
                break
            if majority_gone_at is None and len(running) - len(left) > len(self.nodes) // 2:
                majority_gone_at = time.monotonic()
            if majority_gone_at is not None and time.monotonic() - majority_gone_at > straggler_s:
                break
            time.sleep(0.1)
        for node in running:
            if node.proc.poll() is None:
                log.debug("kafka node %d waits for a lost quorum; killing it", node.node_id)
                node.kill()
            node.proc = None

    def leader(self, topic: str, partition: int = 0, timeout_s: float = 10.0) -> int:
        """The node id that leads ``topic``/``partition`` now."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        metadata = admin.list_topics(topic, timeout=timeout_s).topics[topic]
        if metadata.error is not None:
            raise BrokerUnavailable(f"no metadata for topic {topic!r}: {metadata.error}")
        return metadata.partitions[partition].leader

    def pids(self) -> list[int]:
        return [node.proc.pid for node in self.nodes.values() if node.proc is not None]

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- node {node_id} ({node.log_file})\n{node.log_tail(lines)}"
            for node_id, node in self.nodes.items()
        )

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["install"]:
        print("usage: python -m driftline.streams.embedded.kafka_local install", file=sys.stderr)
        return 2
    try:
        libs = install()
    except BrokerNotInstalled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Apache Kafka {pinned_version()}: {libs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
