"""Drift evaluation: detection delay, false alarms and misses, with speed, in one seeded run.

1. stationary features (16, standard normal): false alarms of the vectorised
   bank through ``ArmMonitor`` (default DriftConfig, then without multiplicity
   control and without debouncing) and of River ADWIN / PageHinkley / KSWIN
   per feature;
2. a 0.5-sigma mean shift in one of 16 features, sudden and ramped over 5,000
   records: the monitor (KS and PSI as one family: one alarm per shifted
   feature; which test carried it) vs River detectors on that feature;
3. River's ``ConceptDriftStream`` over SEA (variant 0 into 2) as the 0/1 error
   stream of a model frozen on variant 0: the error detectors and
   ``ArmMonitor.observe_errors``, plus a stationary error stream;
4. speed: feature-values/s of the grid bank (KS + PSI in one pass, what the monitors
   run) and of the exact KSBank and PSIBank vs River KSWIN on the same values;
5. partitions: the same seeded frames spread over 1, 4 and 12 features
   partitions by frame id, through the real scoring-side stage and decider
   (``driftline.streams.testing.DriftLoop``), sampled 1 in 16 (the default) and unsampled:
   alarms per shift, delay in records, false alarms side by side.

Delay = records after the drift point until the first alarm after it; a drift
with no alarm within HORIZON records is missed. Nothing here asserts a timing.

Usage: python -m bench.bench_drift [--quick] [--only partitions]
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from bench.drift_streams import feature_rows, sea_errors
from driftline.drift.catalog import make_detector
from driftline.drift.config import DriftConfig
from driftline.drift.grid_bank import GridBank
from driftline.drift.monitor import ArmMonitor, DriftAlarm, MonitorKey
from driftline.drift.profile import ReferenceProfile
from driftline.drift.window_tests import KSBank, PSIBank
from driftline.streams.testing import DriftLoop

K = 16
NAMES = tuple(f"f{i:02d}" for i in range(K))
KEY = MonitorKey("bench", 1, "champion")
SEED = 20_240
BATCH = 8192  # rows per ArmMonitor.observe / bank update, like a worker's batch
HORIZON = 10_000
DRIFT_RANGE = (5_000, 15_000)
KSWIN_LEAD = 2_000  # KSWIN (window 100) is fed from this many records before the drift
SEA_WIDTHS = (("sudden", 100), ("gradual", 2_000))
ERROR_DETECTORS = ("ddm", "eddm", "hddm_a", "hddm_w", "adwin")
FULL = dict(
    records=1_000_000,
    river_records=1_000_000,
    kswin=(2, 100_000),
    trials=100,
    kswin_trials=20,
    sea_trials=100,
    sea_records=1_000_000,
    speed_rows=1_000_000,
    speed_kswin=20_000,
    partition_trials=40,
    partition_records=1_000_000,
    join_trials=20,
)
QUICK = dict(
    records=200_000,
    river_records=100_000,
    kswin=(2, 10_000),
    trials=20,
    kswin_trials=5,
    sea_trials=20,
    sea_records=200_000,
    speed_rows=200_000,
    speed_kswin=5_000,
    partition_trials=8,
    partition_records=200_000,
    join_trials=4,
)
PARTITION_COUNTS = (1, 4, 12)
# Frames of 500 rows spread over partitions by frame id, scored 16 frames (8,000 records) a
# batch; a sampled window spans 8,000 records, so the horizon is longer than in section 2.
PART_FRAME, PART_BATCH = 500, 16
PART_RANGE, PART_HORIZON = (40_000, 80_000), 60_000


@dataclass
class Tally:
    """One detector over many trials: delays (inf = missed) and alarms before the drift."""

    delays: list[float] = field(default_factory=list)
    false_alarms: int = 0
    watched: int = 0  # values (records x features) watched before the drift

    def add(self, delay: float | None, false_alarms: int, watched: int) -> None:
        self.delays.append(np.inf if delay is None else float(delay))
        self.false_alarms += false_alarms
        self.watched += watched

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.delays, q, method="inverted_cdf"))


def show(value: float) -> str:
    return f">{HORIZON:,}" if np.isinf(value) else f"{value:,.0f}"


def per_100k(alarms: int, watched: int) -> float:
    return alarms / max(watched, 1) * 100_000


def print_table(tallies: dict[str, Tally]) -> None:
    print(f"  {'detector':<34}{'median':>9}{'p90':>9}{'missed':>8}{'FA/100k/f':>11}{'trials':>8}")
    for label, t in tallies.items():
        print(
            f"  {label:<34}{show(t.percentile(50)):>9}{show(t.percentile(90)):>9}"
            f"{sum(np.isinf(t.delays)):>8}{per_100k(t.false_alarms, t.watched):>11.2f}"
            f"{len(t.delays):>8}"
        )


def logistic_scores(rows: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-rows.sum(axis=1) / 4.0))


def input_alarms(rows: np.ndarray, reference: ReferenceProfile, config: DriftConfig):
    """Input-stream alarms of a fresh ArmMonitor fed ``rows`` in BATCH-row updates."""
    monitor, alarms = ArmMonitor(KEY, NAMES, reference, config), []
    for lo in range(0, len(rows), BATCH):
        chunk = rows[lo : lo + BATCH]
        alarms += [a for a in monitor.observe(chunk, logistic_scores(chunk)) if a.stream == "input"]
    return alarms


def first_after(feed, values: np.ndarray, drift_at: int, chunk: int = 500):
    """(alarms before ``drift_at``, delay of the first alarm after it or None) for one stream.

    ``feed(values) -> indices of alarms`` folds values in, in order; after the
    drift it is fed ``chunk`` values at a time and stops at the first alarm.
    """
    before = len(feed(values[:drift_at]))
    end = min(len(values), drift_at + HORIZON)
    for lo in range(drift_at, end, chunk):
        hits = feed(values[lo : min(lo + chunk, end)])
        if len(hits):
            return before, lo + int(hits[0]) + 1 - drift_at
    return before, None


def first_alarm(alarms: list[DriftAlarm], drift_at: int, feature: str) -> float | None:
    """Delay of the first alarm after the drift on the drifted feature (None: missed)."""
    found = [
        a.position - drift_at for a in alarms if a.position > drift_at and a.feature == feature
    ]
    return min(found) if found else None


def stationary(s: dict, reference: ReferenceProfile) -> None:
    n = s["records"]
    seed = s["seed"] + 1
    rows = feature_rows(n, K, seed=seed)
    print(f"\n1. Stationary: {n:,} records x {K} standard normal features (seed {seed})")
    print(f"  {'detector':<44}{'values':>14}{'alarms':>8}{'FA/100k/f':>11}{'rows/s':>12}")
    configs = [
        ("bank KS+PSI, BH, 2-of-3 (default)", DriftConfig()),
        ("bank KS+PSI, no multiplicity, 2-of-3", DriftConfig(method="none")),
        ("bank KS+PSI, BH, no debounce (1-of-1)", DriftConfig(k=1, n=1)),
        ("bank KS+PSI, no multiplicity, 1-of-1", DriftConfig(method="none", k=1, n=1)),
    ]
    counts = []
    for label, config in configs:
        started = time.perf_counter()
        alarms = input_alarms(rows, reference, config)
        rate = n / (time.perf_counter() - started)
        split = {t: sum(a.evidence["decided_by"] == t for a in alarms) for t in ("ks", "psi")}
        counts.append(len(alarms))
        print(
            f"  {label:<44}{n * K:>14,}{len(alarms):>8}{per_100k(len(alarms), n * K):>11.3f}"
            f"{rate:>12,.0f}  (KS {split['ks']}, PSI {split['psi']})"
        )
    verdict = "met" if counts[0] <= 1 else "MISSED"
    print(
        f"  target: <= 1 false alarm in 1M records x 16 features with multiplicity control: "
        f"{counts[0]} in {n:,} records -> {verdict}"
        + ("" if n >= 1_000_000 else " (quick run: fewer records)")
    )
    subsets = [
        ("adwin", K, s["river_records"]),
        ("page_hinkley", K, s["river_records"]),
        ("kswin", *s["kswin"]),
    ]
    for name, features, records in subsets:
        started, alarms = time.perf_counter(), 0
        for j in range(features):
            alarms += len(make_detector(name).update_many(rows[:records, j]))
        rate = records * features / (time.perf_counter() - started)
        note = "" if (features, records) == (K, n) else f"  subsample: {features} f x {records:,}"
        print(
            f"  {'River ' + name + ' per feature (defaults)':<44}{records * features:>14,}"
            f"{alarms:>8}{per_100k(alarms, records * features):>11.3f}{rate:>12,.0f}{note}"
        )
    print("  (River rows/s are values/s of one single-stream detector)")


def shifted(s: dict, reference: ReferenceProfile, ramp: int) -> None:
    kind = "sudden" if not ramp else f"gradual (linear ramp over {ramp:,} records)"
    print(
        f"\n2. 0.5-sigma mean shift in one of {K} features, {kind}: drift point uniform in "
        f"[{DRIFT_RANGE[0]:,}, {DRIFT_RANGE[1]:,}), horizon {HORIZON:,}"
    )
    monitors = {
        "monitor KS+PSI, one family (default)": DriftConfig(),
        "monitor KS only": DriftConfig(tests=("ks",)),
        "monitor PSI only": DriftConfig(tests=("psi",)),
        "monitor KS+PSI, 1-of-1": DriftConfig(k=1, n=1),
    }
    labels = [
        *monitors,
        "River adwin (that feature)",
        "River page_hinkley (that feature)",
        "River kswin (that feature)",
    ]
    tallies = {label: Tally() for label in labels}
    per_shift: list[int] = []  # default monitor: alarms on the shifted feature after the shift
    carried: Counter = Counter()  # the test behind each first alarm
    rng = np.random.default_rng(s["seed"] + 2 + ramp)
    for trial in range(s["trials"]):
        drift_at, feature = int(rng.integers(*DRIFT_RANGE)), int(rng.integers(K))
        rows = feature_rows(
            drift_at + HORIZON,
            K,
            seed=s["seed"] * 1000 + trial,
            drift_at=drift_at,
            feature=feature,
            ramp=ramp,
        )
        for label, config in monitors.items():
            alarms = input_alarms(rows, reference, config)
            before = [a for a in alarms if a.position <= drift_at]
            tallies[label].add(
                first_alarm(alarms, drift_at, NAMES[feature]), len(before), drift_at * K
            )
            if label == labels[0]:
                after = [a for a in alarms if a.position > drift_at and a.feature == NAMES[feature]]
                per_shift.append(len(after))
                carried[after[0].evidence["decided_by"] if after else "missed"] += 1
        column = rows[:, feature]
        for name in ("adwin", "page_hinkley"):
            before, delay = first_after(make_detector(name).update_many, column, drift_at)
            tallies[f"River {name} (that feature)"].add(delay, before, drift_at)
        if trial < s["kswin_trials"]:
            lead = min(KSWIN_LEAD, drift_at)
            start = drift_at - lead
            before, delay = first_after(make_detector("kswin").update_many, column[start:], lead)
            tallies[labels[-1]].add(delay, before, lead)
    print_table(tallies)
    median = tallies[labels[0]].percentile(50)
    target = "met" if median <= 2000 else "MISSED"
    print(
        f"  default monitor: {sum(per_shift)} alarms on the shifted feature in {len(per_shift)} "
        f"shifts (max {max(per_shift)} per shift); first alarm carried by "
        + ", ".join(f"{test} {n}" for test, n in sorted(carried.items()))
    )
    if not ramp:
        print(
            "  target: 0.5-sigma shift detected with median delay <= 2,000 records: monitor "
            f"{show(median)} -> {target}"
        )
    print(
        f"  (delays from the {'start of the ramp' if ramp else 'shift'}; percentiles count a "
        f"miss as infinite; FA = alarms before the drift, any feature; KSWIN fed from "
        f"{KSWIN_LEAD:,} records before the drift, on {s['kswin_trials']} trials)"
    )


def error_feed(monitor: ArmMonitor):
    def feed(values: np.ndarray) -> np.ndarray:
        start = monitor.outcomes_seen
        found = sorted(a.position - 1 - start for a in monitor.observe_errors(values))
        return np.asarray(found, dtype=np.int64)

    return feed


def concept(s: dict, reference: ReferenceProfile) -> None:
    monitor_label = f"ArmMonitor errors ({'+'.join(DriftConfig().error_detectors)})"
    for kind, width in SEA_WIDTHS:
        print(
            f"\n3. SEA variant 0 -> 2 via River ConceptDriftStream, {kind} (width {width:,}), "
            f"noise 0.1; errors of the variant-0 rule; centre uniform in "
            f"[{DRIFT_RANGE[0]:,}, {DRIFT_RANGE[1]:,})"
        )
        tallies = {name: Tally() for name in (*ERROR_DETECTORS, monitor_label)}
        rng, rates = np.random.default_rng(s["seed"] + 3 + width), []
        for trial in range(s["sea_trials"]):
            position = int(rng.integers(*DRIFT_RANGE))
            start = position - width // 2
            errors = sea_errors(
                start + HORIZON, seed=s["seed"] * 1000 + trial, position=position, width=width
            )
            for name in ERROR_DETECTORS:
                before, delay = first_after(make_detector(name).update_many, errors, start)
                tallies[name].add(delay, before, start)
            feed = error_feed(ArmMonitor(KEY, NAMES, reference, DriftConfig()))
            before, delay = first_after(feed, errors, start)
            tallies[monitor_label].add(delay, before, start)
            rates.append((errors[:start].mean(), errors[position + width :].mean()))
        print_table(tallies)
        old, new = np.mean(rates, axis=0)
        print(
            f"  (error rate {old:.3f} before, {new:.3f} after; delays from position - width/2 = "
            f"{width // 2:,} records before the centre, where 12% of records follow the new "
            "concept; FA per 100k records of the one error stream; River 0.26's "
            "ConceptDriftStream overflows exp() for width=1, so 'sudden' is width 100)"
        )
    n = s["sea_records"]
    errors = sea_errors(n, seed=s["seed"] + 4)
    print(
        f"\n3b. Stationary SEA variant 0 error stream: {n:,} records, error rate "
        f"{errors.mean():.3f}"
    )
    feeds = {name: make_detector(name).update_many for name in ERROR_DETECTORS}
    feeds[monitor_label] = error_feed(ArmMonitor(KEY, NAMES, reference, DriftConfig()))
    for label, feed in feeds.items():
        alarms = len(feed(errors))
        print(f"  {label:<40}{alarms:>7} false alarms = {per_100k(alarms, n):>8.2f} per 100k")


def speed(s: dict, reference: ReferenceProfile) -> None:
    n = s["speed_rows"]
    rows = feature_rows(n, K, seed=s["seed"] + 5)
    print(f"\n4. Speed: {K} features, window 1000, updates of {BATCH:,} rows, {n:,} rows")
    rates = {}
    banks = {
        "GridBank (KS + PSI, what the monitors run)": GridBank(reference, window=1000),
        "KSBank (exact KS)": KSBank(reference, window=1000),
        "PSIBank (exact PSI)": PSIBank(reference, window=1000, min_effect=0.1),
    }
    for label, bank in banks.items():
        started = time.perf_counter()
        for lo in range(0, n, BATCH):
            bank.update(rows[lo : lo + BATCH])
        rates[label] = n * K / (time.perf_counter() - started)
    per_feature = s["speed_kswin"] // K  # the first rows of the same matrix, one KSWIN a feature
    started = time.perf_counter()
    for j in range(K):
        make_detector("kswin").update_many(rows[:per_feature, j])
    kswin = per_feature * K / (time.perf_counter() - started)
    for name, rate in rates.items():
        print(
            f"  {name}: {rate:>14,.0f} feature-values/s = {rate / kswin:,.0f}x "
            f"River KSWIN (target >= 1,000,000: {'met' if rate >= 1e6 else 'MISSED'})"
        )
    print(
        f"  River KSWIN (make_detector defaults, {per_feature * K:,} values): {kswin:,.0f} "
        "values/s (expected about 5,000/s on a 2-core machine)"
    )


def loop_alarms(
    rows: np.ndarray, partitions: int, config: DriftConfig, reference: ReferenceProfile
) -> list[tuple[str, str | None, int]]:
    """(stream, feature, position) of every DriftEvent of ``rows`` as frames over ``partitions``."""
    loop = DriftLoop(config, lambda model, version: reference)
    scores = 1.0 / (1.0 + np.exp(-rows[:, 0]))  # the shifted feature never moves the scores
    frames = []
    for i, lo in enumerate(range(0, len(rows), PART_FRAME)):
        frame_id = f"frame-{i}"
        partition = zlib.crc32(frame_id.encode()) % partitions
        frames.append(
            (partition, frame_id, "bench", rows[lo : lo + PART_FRAME], scores[lo : lo + PART_FRAME])
        )
    for lo in range(0, len(frames), PART_BATCH):
        loop.score(frames[lo : lo + PART_BATCH])
    return [
        (json.loads(e["evidence"])["stream"], e["feature"], json.loads(e["evidence"])["position"])
        for e in loop.events
    ]


def partitions(s: dict, reference: ReferenceProfile) -> None:
    trials, n = s["partition_trials"], s["partition_records"]
    print(
        f"\n5. Partitions: frames of {PART_FRAME} rows spread over 1, 4 and 12 partitions by frame "
        f"id, {PART_BATCH} frames a scoring batch, through the scoring stage and the decider "
        f"(driftline.streams.testing.DriftLoop); 0.5-sigma shift of one of {K} features at a point "
        f"uniform "
        f"in [{PART_RANGE[0]:,}, {PART_RANGE[1]:,}), horizon {PART_HORIZON:,}, {trials} trials; "
        f"stationary: {n:,} records"
    )
    print(
        f"  {'frames into the window tests':<28}{'partitions':>11}{'median':>9}{'p90':>9}"
        f"{'missed':>8}{'alarms/shift':>14}{'other FA':>10}{'stationary FA':>15}{'records/s':>11}"
    )
    configs = {"1 in 16 (default)": DriftConfig(), "every row": DriftConfig(sample_every=1)}
    for label, config in configs.items():
        for count in PARTITION_COUNTS:
            rng = np.random.default_rng(s["seed"] + 6)
            delays, per_shift, other, elapsed, records = [], [], 0, 0.0, 0
            for trial in range(trials):
                drift_at, feature = int(rng.integers(*PART_RANGE)), int(rng.integers(K))
                rows = feature_rows(
                    drift_at + PART_HORIZON, K, seed=s["seed"] * 1000 + trial, drift_at=drift_at,
                    feature=feature,
                ).astype(np.float32)  # fmt: skip
                started = time.perf_counter()
                alarms = loop_alarms(rows, count, config, reference)
                elapsed, records = elapsed + time.perf_counter() - started, records + len(rows)
                # A batch's parts reach the decider partition by partition: positions can
                # move by one batch, so an alarm that early still counts for the shift.
                early = drift_at - PART_BATCH * PART_FRAME
                hits = [a for a in alarms if a[1] == NAMES[feature] and a[2] > early]
                per_shift.append(len(hits))
                other += len(alarms) - len(hits)
                delays.append(min(a[2] for a in hits) - drift_at if hits else np.inf)
            stationary_alarms = loop_alarms(
                feature_rows(n, K, seed=s["seed"] + 7).astype(np.float32), count, config, reference
            )
            tally = Tally(delays=delays)
            print(
                f"  {label:<28}{count:>11}{show(tally.percentile(50)):>9}"
                f"{show(tally.percentile(90)):>9}{sum(np.isinf(delays)):>8}"
                f"{np.mean(per_shift):>9.2f}/{max(per_shift):<4}{other:>10}"
                f"{len(stationary_alarms):>15}{records / elapsed:>11,.0f}"
            )
    print(
        "  (delay: records from the shift to the first alarm on that feature, in the order the "
        "decider folds them; alarms/shift: mean/max on the shifted feature; other FA: alarms on "
        f"other features or the scores during the shift trials; stationary FA: alarms in {n:,} "
        f"stationary records x {K} features; misses count as infinite, shown as >{PART_HORIZON:,})"
    )
    join_partitions(s)


def join_partitions(s: dict) -> None:
    trials = s["join_trials"]
    print(
        f"\n5b. SEA 0 -> 2 concept drift (width 100) as outcomes through the outcomes join on 1, "
        f"4 and 12 join partitions and on to the decider, batches of 500 outcomes, {trials} trials"
    )
    print(
        f"  {'join partitions':<18}{'median':>9}{'p90':>9}{'missed':>8}{'early FA':>10}"
        f"{'later alarms':>14}"
    )
    for count in PARTITION_COUNTS:
        rng = np.random.default_rng(s["seed"] + 8)
        delays, early, later = [], 0, 0
        for trial in range(trials):
            position = int(rng.integers(*DRIFT_RANGE))
            start = position - 50
            errors = sea_errors(start + HORIZON, seed=s["seed"] * 1000 + trial, position=position)
            loop = DriftLoop(DriftConfig(), lambda model, version: None, join_partitions=count)
            outcomes = [(f"p{i}", "bench", 0.9, float(1 - e)) for i, e in enumerate(errors)]
            for lo in range(0, len(outcomes), 500):
                loop.join(outcomes[lo : lo + 500])
            positions = [json.loads(e["evidence"])["position"] for e in loop.events]
            # One batch of outcomes may reach the decider out of order: 500 early still counts.
            after = [p for p in positions if p > start - 500]
            early += len(positions) - len(after)
            later += max(len(after) - 1, 0)
            delays.append(min(after) - start if after else np.inf)
        tally = Tally(delays=delays)
        print(
            f"  {count:<18}{show(tally.percentile(50)):>9}{show(tally.percentile(90)):>9}"
            f"{sum(np.isinf(delays)):>8}{early:>10}{later:>14}"
        )
    print(
        "  (delay from position - width/2, in outcomes as the decider folds them; early FA: "
        "alarms before the change; later alarms: any after the first, over the "
        f"{HORIZON:,} outcomes after the change)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~1 minute: fewer trials and records")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--only", choices=["partitions"], help="run only this section")
    args = parser.parse_args()
    s = dict(QUICK if args.quick else FULL, seed=args.seed)
    seed = s["seed"]
    config, started = DriftConfig(), time.perf_counter()
    reference_rows = feature_rows(100_000, K, seed=seed)
    reference = ReferenceProfile.from_matrix(reference_rows, list(NAMES))
    print(
        f"driftline drift evaluation{' (--quick: fewer trials and records)' if args.quick else ''}"
    )
    print(
        f"seed {seed}; reference profile from 100,000 separate training rows (seed {seed}); "
        f"window {config.window}; tests {'+'.join(config.tests).upper()}; multiplicity "
        f"{config.method.upper()} at alpha {config.alpha}; debounce {config.k}-of-{config.n}; "
        f"psi_min {config.psi_min}; error detectors {'+'.join(config.error_detectors)}"
    )
    sections = [(stationary,), (shifted, 0), (shifted, 5_000), (concept,), (speed,), (partitions,)]
    if args.only == "partitions":
        sections = [(partitions,)]
    for section, *extra in sections:
        section_started = time.perf_counter()
        section(s, reference, *extra)
        print(f"  [{time.perf_counter() - section_started:,.1f} s]")
    print(f"\ntotal {time.perf_counter() - started:,.0f} s")


if __name__ == "__main__":
    main()
