"""Scope: one arm alarming is the version; every served arm alarming is the world."""

from __future__ import annotations

from driftline.drift.scope import VERSION, WORLD, classify


def _event(arm, stream="input", detector="ks", feature="f01"):
    return {"arm": arm, "stream": stream, "detector": detector, "feature": feature}


def test_only_the_canary_alarming_is_the_version():
    (scope,) = classify([_event("canary", "error", "adwin", None)], {"champion", "canary"})
    assert scope.scope == VERSION and scope.arms == ("canary",)


def test_every_served_arm_alarming_is_the_world_and_shadows_are_not_required():
    events = [_event("champion"), _event("challenger")]
    (scope,) = classify(events, {"champion", "challenger", "shadow"})
    assert scope.scope == WORLD and scope.arms == ("challenger", "champion")


def test_signals_are_told_apart_and_one_served_arm_is_never_the_world():
    events = [_event("champion"), _event("canary", feature="f02")]
    scopes = {s.signal: s.scope for s in classify(events, {"champion", "canary"})}
    assert scopes == {("input", "ks", "f01"): VERSION, ("input", "ks", "f02"): VERSION}
    (alone,) = classify([_event("champion")], {"champion"})
    assert alone.scope == VERSION
