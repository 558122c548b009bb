"""Codec cost per record: fastavro alone (the current path) against the specialised path.

Decodes 16-feature FeatureRecord payloads and encodes Prediction records, the
two codec calls on the scoring hot path, both ways in the same run:

* current: ``SchemaCodec(specialise=False)``, i.e. fastavro's
  ``schemaless_reader``/``schemaless_writer`` per record, as before;
* new: the default codec, whose readers and writers are generated from the
  parsed schemas, plus the bulk ``decode_many``.

Rounds alternate between the paths and the best round of each counts, so a
busy machine slows both alike. It also checks that both paths give the same
records and the same bytes. Usage::

    python -m bench.bench_codec [--records 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from driftline.schemas import SchemaCodec

_T0 = 1_700_000_000_000


def feature_records(n: int, *, names: bool, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "record_id": f"rec-{i:08d}",
            "entity_id": f"customer-{rng.randrange(100_000)}",
            "model": "fraud",
            "features": [rng.gauss(0.0, 1.0) for _ in range(16)],
            "feature_names": [f"f{j}" for j in range(16)] if names else None,
            "event_time": _T0 + i,
        }
        for i in range(n)
    ]


def predictions(n: int, seed: int = 2) -> list[dict]:
    rng = random.Random(seed)
    scored_at = _T0 + 5_000
    out = []
    for i in range(n):
        score = rng.random()
        out.append(
            {
                "prediction_id": f"{rng.getrandbits(128):032x}",
                "record_id": f"rec-{i:08d}",
                "entity_id": f"customer-{rng.randrange(100_000)}",
                "model": "fraud",
                "version": 3,
                "arm": "champion",
                "experiment_id": None,
                "score": score,
                "scores": [1.0 - score, score],
                "event_time": _T0 + i,
                "scored_at": scored_at,
                "latency_ms": float(scored_at - _T0 - i),
                "model_latency_ms": 0.75,
                "feature_service": None,
            }
        )
    return out


def best_us(fn: Callable[[], object], n: int, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) / n * 1e6)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    n, rounds = args.records, args.rounds

    old = SchemaCodec(specialise=False)
    new = SchemaCodec()
    plain = old.encode_many("FeatureRecord", feature_records(n, names=False))
    named = old.encode_many("FeatureRecord", feature_records(n, names=True))
    preds = predictions(n)

    # Same answers both ways before timing anything.
    for values in (plain, named):
        expected = [old.decode(v) for v in values]
        assert [new.decode(v) for v in values] == expected
        assert new.decode_many(values) == expected
    assert new.encode_many("Prediction", preds) == old.encode_many("Prediction", preds)
    assert [new.encode("Prediction", p) for p in preds[:50]] == old.encode_many(
        "Prediction", preds[:50]
    )

    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        (
            "decode FeatureRecord, 16 features",
            lambda: [old.decode(v) for v in plain],
            lambda: [new.decode(v) for v in plain],
        ),
        (
            "  same, decode_many",
            lambda: [old.decode(v) for v in plain],
            lambda: new.decode_many(plain),
        ),
        (
            "  with 16 feature names",
            lambda: [old.decode(v) for v in named],
            lambda: new.decode_many(named),
        ),
        (
            "encode Prediction, encode_many",
            lambda: old.encode_many("Prediction", preds),
            lambda: new.encode_many("Prediction", preds),
        ),
        (
            "  same, encode one at a time",
            lambda: [old.encode("Prediction", p) for p in preds],
            lambda: [new.encode("Prediction", p) for p in preds],
        ),
    ]
    print(f"{n} records per round, best of {rounds} alternating rounds, µs per record")
    print(f"{'':36s} {'current':>9s} {'new':>9s} {'speed-up':>9s}")
    for label, current, fast in cases:
        before: list[float] = []
        after: list[float] = []
        for _ in range(rounds):
            before += best_us(current, n, 1)
            after += best_us(fast, n, 1)
        b, a = min(before), min(after)
        print(f"{label:36s} {b:9.2f} {a:9.2f} {b / a:8.2f}x")


if __name__ == "__main__":
    main()
