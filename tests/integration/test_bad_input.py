"""Bad input goes to the dead-letter topic with its reason; the worker carries on."""

from __future__ import annotations

import struct

import pytest

from driftline.schemas import default_codec
from driftline.streams.demo.loadgen import synthetic_records
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import dead_letters, scrape_metrics, send_in_order, wait_until

pytestmark = pytest.mark.integration

CODEC = default_codec()


def _good(i: int) -> dict:
    record = next(synthetic_records(model="demo", count=1, entities=1, seed=100 + i, n_features=16))
    return dict(record, record_id=f"good-{i}")


def _send(stack_env, values: list[tuple[bytes | None, bytes | None]]) -> None:
    send_in_order(stack_env.bootstrap, Topics(stack_env.prefix).features, values)


def _dead_letters(stack_env) -> list[dict]:
    return dead_letters(stack_env.bootstrap, Topics(stack_env.prefix).deadletter)


def _expect_one_dead_letter(stack_env, bad: bytes, reason: str) -> dict:
    _send(stack_env, [(b"bad", bad)])
    wait_until(lambda: len(_dead_letters(stack_env)) == 1, what="a dead letter")
    (letter,) = _dead_letters(stack_env)
    assert letter["reason"] == reason, letter
    assert letter["raw"] == bad
    assert letter["source_topic"] == Topics(stack_env.prefix).features
    assert letter["partition"] == 0 and letter["offset"] == 0
    assert letter["detail"]
    return letter


def _encoded_with(features: list[float]) -> bytes:
    return CODEC.encode("FeatureRecord", dict(_good(0), features=features))


def test_undecodable_bytes(stack_env, serving_worker):
    body = b"\xff" * 3  # a valid header for FeatureRecord, then garbage
    header = b"\x00" + struct.pack(">I", CODEC.schema_id("FeatureRecord"))
    _expect_one_dead_letter(stack_env, header + body, "undecodable")


def test_unknown_magic_byte(stack_env, serving_worker):
    _expect_one_dead_letter(
        stack_env, b"\x07" + _encoded_with([0.0] * 16)[1:], "unknown_magic_byte"
    )


def test_unknown_schema_id(stack_env, serving_worker):
    _expect_one_dead_letter(
        stack_env, b"\x00" + struct.pack(">I", 987654) + b"\x00", "unknown_schema_id"
    )


def test_wrong_feature_count(stack_env, serving_worker):
    letter = _expect_one_dead_letter(stack_env, _encoded_with([0.5] * 15), "feature_count_mismatch")
    assert "16" in letter["detail"] and "15" in letter["detail"]


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values(stack_env, serving_worker, bad_value):
    _expect_one_dead_letter(stack_env, _encoded_with([0.1] * 15 + [bad_value]), "non_finite")


def test_good_records_around_bad_ones_are_all_scored(stack_env, serving_worker):
    settings = stack_env.settings()
    values = []
    for i in range(300):
        values.append((b"k", CODEC.encode("FeatureRecord", _good(i))))
        if i % 50 == 0:
            values += [
                (b"k", b"garbage"),
                (b"k", _encoded_with([1.0] * 3)),
                (b"k", _encoded_with([float("nan")] * 16)),
            ]
    _send(stack_env, values)
    db = settings.clickhouse.database
    wait_until(
        lambda: (
            serving_worker.sql(f"SELECT count() FROM {db}.predictions")[0][0] >= 300
            and serving_worker.sql(f"SELECT count() FROM {db}.deadletters")[0][0] >= 18
        ),
        what="good records scored and bad ones stored",
    )
    scored = serving_worker.sql(f"SELECT uniqExact(record_id) FROM {db}.predictions")[0][0]
    assert scored == 300
    reasons = serving_worker.sql(
        f"SELECT reason, count() FROM {db}.deadletters GROUP BY reason ORDER BY reason"
    )
    assert reasons == [["feature_count_mismatch", 6], ["non_finite", 6], ["unknown_magic_byte", 6]]
    assert serving_worker.proc.poll() is None  # still running
    # The worker's Prometheus counters say the same, reason by reason.
    counted = {
        dict(labels)["reason"]: value
        for (name, labels), value in scrape_metrics(serving_worker.url).items()
        if name == "driftline_dead_letters_total"
    }
    assert counted == {reason: n for reason, n in reasons}


def test_records_for_a_model_without_champion_are_dead_lettered(stack_env, start_worker):
    start_worker()
    record = dict(_good(0), model="nobody-serves-this")
    letter = _expect_one_dead_letter(
        stack_env, CODEC.encode("FeatureRecord", record), "no_champion"
    )
    assert "nobody-serves-this" in letter["detail"]
