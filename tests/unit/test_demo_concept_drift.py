"""The demo's concept drift: outcomes go wrong only for predictions scored after it."""

from __future__ import annotations

from driftline.streams.demo.story import ConceptDrift


def test_predictions_scored_before_the_change_keep_the_base_rate() -> None:
    concept = ConceptDrift(base_rate=0.1)
    concept.inject(2, 0.6, at_ms=1_000)
    assert concept.wrong_rate(2, scored_at_ms=999) == 0.1  # labelled late, scored before
    assert concept.wrong_rate(2, scored_at_ms=1_000) == 0.6
    assert concept.wrong_rate(1, scored_at_ms=5_000) == 0.1  # another version is untouched


def test_without_a_change_every_version_has_the_base_rate() -> None:
    assert ConceptDrift(base_rate=0.2).wrong_rate(7, scored_at_ms=10**12) == 0.2
