import io
import json
import random

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.lineage import events as ev
from driftline.lineage.events import EventType, LifecycleEvent
from driftline.lineage.exceptions import InvalidRecord

# The LifecycleEvent contract from the shared design, inline so this test does
# not depend on the schemas package.
AVRO_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "LifecycleEvent",
        "namespace": "driftline.v1",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "type", "type": "string"},
            {"name": "model", "type": "string"},
            {"name": "version", "type": ["null", "int"], "default": None},
            {"name": "actor", "type": "string"},
            {"name": "state", "type": ["null", "string"], "default": None},
            {"name": "previous_state", "type": ["null", "string"], "default": None},
            {"name": "attributes", "type": {"type": "map", "values": "string"}},
            {"name": "evidence", "type": "string", "default": "{}"},
            {"name": "occurred_at", "type": "long"},
        ],
    }
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
evidence_st = st.dictionaries(st.text(max_size=6), json_values, max_size=5)
attributes_st = st.dictionaries(st.text(max_size=6), st.text(max_size=8), max_size=5)


def shuffled(value, rnd: random.Random):
    """The same JSON value with every dict rebuilt in a random key order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rnd) for v in value]
    return value


def make(evidence=None, attributes=None, **overrides) -> LifecycleEvent:
    fields = dict(
        event_id="e-1",
        type=EventType.PROMOTED,
        model="fraud",
        version=3,
        actor="alice",
        state="champion",
        previous_state="registered",
        attributes=attributes if attributes is not None else {"previous_champion": "2"},
        evidence=evidence if evidence is not None else {"p_value": 0.01, "n": [10, 20]},
        occurred_at=1_700_000_000_123,
    )
    fields.update(overrides)
    return LifecycleEvent(**fields)


def test_canonical_json_is_pinned() -> None:
    # Changing this spelling changes every hash an outside verifier computes.
    expected = (
        b'{"actor":"alice","attributes":{"previous_champion":"2"},"event_id":"e-1",'
        b'"evidence":{"n":[10,20],"p_value":0.01},"model":"fraud","occurred_at":1700000000123,'
        b'"previous_state":"registered","state":"champion","type":"promoted","version":3}'
    )
    assert make().canonical_json() == expected


def test_canonical_json_is_utf8_not_escaped() -> None:
    event = make(actor="zoë")
    assert "zoë".encode() in event.canonical_json()


@settings(max_examples=150, deadline=None)
@given(evidence=evidence_st, attributes=attributes_st, seed=st.integers(0, 2**32))
def test_canonical_json_ignores_dict_order(evidence, attributes, seed) -> None:
    rnd = random.Random(seed)
    a = make(evidence=evidence, attributes=attributes)
    b = make(evidence=shuffled(evidence, rnd), attributes=shuffled(attributes, rnd))
    assert a.canonical_json() == b.canonical_json()
    assert json.loads(a.canonical_json())["evidence"] == evidence


@settings(max_examples=150, deadline=None)
@given(
    evidence=evidence_st, attributes=attributes_st, version=st.none() | st.integers(1, 2**31 - 1)
)
def test_avro_round_trip_keeps_canonical_form(evidence, attributes, version) -> None:
    event = make(evidence=evidence, attributes=attributes, version=version)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, AVRO_SCHEMA, event.to_avro())
    buf.seek(0)
    decoded = fastavro.schemaless_reader(buf, AVRO_SCHEMA)
    again = LifecycleEvent.from_avro(decoded)
    assert again == event
    assert again.canonical_json() == event.canonical_json()


def test_to_avro_shape() -> None:
    record = make().to_avro()
    assert set(record) == set(ev.AVRO_FIELDS)
    assert record["evidence"] == '{"n":[10,20],"p_value":0.01}'
    assert isinstance(record["occurred_at"], int)


def test_from_avro_defaults_and_unknown_type() -> None:
    event = LifecycleEvent.from_avro(
        {
            "event_id": "x",
            "type": "canary_started",  # the contract is open to new types
            "model": "m",
            "actor": "ci",
            "attributes": {},
            "occurred_at": 5,
        }
    )
    assert event.version is None and event.evidence == {} and event.type == "canary_started"


def test_from_avro_reports_missing_field_and_bad_evidence() -> None:
    with pytest.raises(InvalidRecord, match="'actor'"):
        LifecycleEvent.from_avro({"event_id": "x", "type": "t", "model": "m", "occurred_at": 1})
    record = make().to_avro() | {"evidence": "{not json"}
    with pytest.raises(InvalidRecord, match="not JSON"):
        LifecycleEvent.from_avro(record)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"evidence": {"stat": float("nan")}}, "NaN"),
        ({"evidence": {"when": object()}}, "not plain JSON"),
        ({"attributes": {"n": 3}}, "map<string>"),
        ({"version": "3"}, "version"),
        ({"occurred_at": 1.5}, "occurred_at"),
        ({"model": ""}, "model"),
    ],
)
def test_invalid_events_are_refused(overrides, fragment) -> None:
    with pytest.raises(InvalidRecord, match=fragment):
        make(**overrides)


def test_lone_surrogate_in_evidence_is_refused() -> None:
    record = make().to_avro() | {"evidence": '{"k": "\\ud800"}'}
    with pytest.raises(InvalidRecord, match="surrogates"):
        LifecycleEvent.from_avro(record)


def test_event_does_not_alias_caller_dicts() -> None:
    evidence = {"a": [1]}
    event = make(evidence=evidence)
    evidence["a"].append(2)
    assert event.evidence == {"a": [1]}


def test_constructors() -> None:
    reg = ev.registered("fraud", 1, "alice", {"digest": "d"})
    assert reg.type == EventType.REGISTERED and reg.state == "registered"
    assert reg.version == 1 and reg.attributes == {"digest": "d"}
    pro = ev.promoted("fraud", 2, "bob", previous_state="registered", previous_champion=1)
    assert pro.type == "promoted" and pro.state == "champion"
    assert pro.previous_state == "registered"
    assert pro.attributes == {"previous_champion": "1"}
    first = ev.promoted("fraud", 1, "bob", previous_state="registered", previous_champion=None)
    assert first.attributes == {}
    assert reg.event_id != pro.event_id
    assert abs(pro.occurred_at - ev.now_ms()) < 60_000


# -- from_canonical: reading back what the audit log stores ------------------------------


@settings(max_examples=150, deadline=None)
@given(
    evidence=evidence_st,
    attributes=attributes_st,
    version=st.none() | st.integers(1, 2**31 - 1),
    state=st.none() | st.sampled_from(["champion", "archived"]),
)
def test_from_canonical_inverts_canonical_json(evidence, attributes, version, state) -> None:
    event = make(evidence=evidence, attributes=attributes, version=version, state=state)
    data = event.canonical_json()
    again = LifecycleEvent.from_canonical(data)
    assert again == event
    assert again.canonical_json() == data
    assert LifecycleEvent.from_canonical(data.decode("utf-8")) == event


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"event_id": "x"}', "missing \\['actor'"),
        (make().canonical_json()[:-1] + b',"extra":1}', "unexpected \\['extra'\\]"),
        (make().canonical_json().replace(b'"version":3', b'"version":"3"'), "version"),
        (make().canonical_json().replace(b'{"n":[10,20],"p_value":0.01}', b"[]"), "evidence"),
        (make().canonical_json().replace(b'"p_value":0.01', b'"p_value":NaN'), "NaN"),
    ],
)
def test_from_canonical_refuses_what_is_not_a_canonical_event(data, fragment) -> None:
    with pytest.raises(InvalidRecord, match=fragment):
        LifecycleEvent.from_canonical(data)


def test_event_types_cover_the_lifecycle() -> None:
    assert [t.value for t in EventType] == [
        "registered",
        "validated",
        "rejected",
        "challenger_assigned",
        "canary_started",
        "shadow_started",
        "traffic_changed",
        "promoted",
        "archived",
        "rolled_back",
        "command_rejected",
        "drift_detected",
        "audit_alarm",
        "audit_alarm_cleared",
        "erased",
    ]
