"""The local Apache Kafka the suite runs on: one node, a 3-node cluster, and no process left."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from driftline.streams.embedded.kafka_local import KafkaCluster
from driftline.streams.embedded.processes import stop_child
from driftline.streams.kafka.offsets import watermarks
from driftline.streams.kafka.topics import ensure_topics
from tests.integration.helpers import read_topic, wait_until

pytestmark = pytest.mark.integration


def _running(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    # Idempotent, acks=all and batched: what driftline's producers do on a real cluster.
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20}
    )
    for i, value in enumerate(values):
        producer.produce(topic, value, key=str(i % 7).encode())
    assert producer.flush(30) == 0


def _consume_group(bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < count and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None:
                    got.append(message.value())
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


def test_single_broker_serves_a_group_and_counts_records_in_end_offsets(kafka_broker):
    topic = f"k{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap.servers": kafka_broker.bootstrap}, [topic], partitions=2)
    values = [str(i).encode() for i in range(500)]
    _produce(kafka_broker.bootstrap, topic, values)
    got = _consume_group(kafka_broker.bootstrap, topic, f"g{uuid.uuid4().hex[:8]}", 500)
    assert sorted(got, key=int) == values
    # Batched produce, and the end offsets still count records (Tansu's count batches).
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "hw"})
    try:
        ends = [watermarks(consumer, topic, p)[1] for p in range(2)]
    finally:
        consumer.close()
    assert sum(ends) == 500
    assert kafka_broker.proc.poll() is None


@pytest.mark.parametrize("where", ["kafka_broker", "kafka_cluster"])
def test_topics_are_readable_and_writable_the_moment_they_are_created(where, request):
    """The controller acknowledges a topic before its partitions have leaders; ensure_topics
    returns only after they have, so a client that uses the topic at once (raw librdkafka
    calls, no retries of ours) never hears "not leader"."""
    broker = request.getfixturevalue(where)
    replicas = getattr(broker, "replication_factor", 1)
    names = [f"fresh{uuid.uuid4().hex[:8]}" for _ in range(6)]
    ensure_topics(
        {"bootstrap.servers": broker.bootstrap}, names, partitions=6, replication_factor=replicas
    )
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "fresh"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    try:
        for name in names:
            for p in range(6):
                assert consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10) == (0, 0)
                producer.produce(name, b"x", partition=p)
        assert producer.flush(30) == 0
    finally:
        consumer.close()


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from driftline.streams.embedded.kafka_local import KafkaBroker

    broker = KafkaBroker(Path(sys.argv[1])).start()
    print(broker.proc.pid, broker.bootstrap, flush=True)
    time.sleep(600)
    """
)


def test_broker_dies_with_the_process_that_started_it(tmp_path):
    """SIGKILL the test run's stand-in: its broker goes too (PR_SET_PDEATHSIG)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "kafka")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        line = parent.stdout.readline()
        assert line, f"the child did not start a broker; log:\n{_log(tmp_path)}"
        pid, bootstrap = line.split()
        assert AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).brokers
        assert _running(int(pid))
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_until(lambda: not _running(int(pid)), timeout_s=60, what=f"broker pid {pid} gone")
    finally:
        stop_child(parent, grace_s=1, name="broker parent", quiet=True)


def _log(tmp_path: Path) -> str:
    log = tmp_path / "kafka" / "server.log"
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def _topic_config(cluster: KafkaCluster, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    (future,) = admin.describe_configs([ConfigResource("topic", topic)]).values()
    return {name: entry.value for name, entry in future.result(timeout=10).items()}


def _in_sync(cluster: KafkaCluster, topic: str) -> list[int]:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    return [len(p.isrs) for _, p in sorted(meta.partitions.items())]


def test_cluster_keeps_every_record_through_a_killed_leader_and_a_stopped_node(kafka_cluster):
    cluster = kafka_cluster
    topic = f"f{uuid.uuid4().hex[:8]}"
    ensure_topics(
        {"bootstrap.servers": cluster.bootstrap}, [topic], partitions=3, replication_factor=3
    )
    config = _topic_config(cluster, topic)
    assert config["min.insync.replicas"] == "2"
    assert config["unclean.leader.election.enable"] == "false"
    wait_until(lambda: _in_sync(cluster, topic) == [3, 3, 3], what="3 replicas in sync")

    values = [str(i).encode() for i in range(900)]
    _produce(cluster.bootstrap, topic, values[:300])
    leader = cluster.leader(topic, 0)
    cluster.kill(leader)  # SIGKILL: no controlled shutdown
    _produce(cluster.bootstrap, topic, values[300:600])  # acks=all holds with 2 in sync
    assert cluster.leader(topic, 0) != leader
    cluster.start_node(leader)
    wait_until(lambda: _in_sync(cluster, topic) == [3, 3, 3], timeout_s=60, what="ISR back to 3")

    other = next(n for n in cluster.nodes if n != leader)
    pid = cluster.node(other).proc.pid
    cluster.node(other).stop()  # controlled shutdown
    assert not _running(pid)
    _produce(cluster.bootstrap, topic, values[600:])
    cluster.start_node(other)

    got = _consume_group(cluster.bootstrap, topic, f"g{uuid.uuid4().hex[:8]}", 900)
    assert sorted(got, key=int) == values  # nothing lost, nothing doubled
    assert len(read_topic(cluster.bootstrap, topic, 3)) == 900


def test_only_tansu_is_treated_as_counting_batches_in_end_offsets(kafka_broker, tansu_broker):
    from driftline.streams.kafka.broker_quirks import detect_quirks

    assert not detect_quirks(
        {"bootstrap.servers": kafka_broker.bootstrap}
    ).end_offsets_count_batches
    assert detect_quirks({"bootstrap.servers": tansu_broker.bootstrap}).end_offsets_count_batches


def test_the_running_broker_compiles_with_c1_only_and_writes_its_gc_log(kafka_broker):
    """The JVM took the options: C2's compiler threads stole a co-located worker's core."""
    argv = Path(f"/proc/{kafka_broker.proc.pid}/cmdline").read_bytes().split(b"\0")
    stops = [a for a in argv if a.startswith(b"-XX:TieredStopAtLevel=")]
    assert stops[-1] == b"-XX:TieredStopAtLevel=1"
    gc_log = kafka_broker.data_dir / "gc.log"
    wait_until(lambda: gc_log.exists() and "Using" in gc_log.read_text(), timeout_s=10)
