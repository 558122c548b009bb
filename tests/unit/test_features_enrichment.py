"""Online enrichment against a real Feast repository (SQLite online store, on disk)."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pytest

from driftline.features.enrichment import (
    FEATURE_MISSING,
    FEATURE_STORE_UNAVAILABLE,
    FEATURES_UNSERVED,
    Enricher,
    EnrichmentPolicy,
    MissingRule,
)
from driftline.features.example_repo import (
    DAYS,
    REQUEST_FEATURES,
    SERVICE,
    STORE_FEATURES,
    apply_definitions,
    entity_ids,
    profile_values,
    write_example_repo,
)
from driftline.features.exceptions import FeatureStoreUnavailable
from driftline.features.feast_store import FeastFeatureStore, view_version

COLUMNS = STORE_FEATURES + REQUEST_FEATURES


class CountingStore:
    """The real store, counting online lookups (the claim is one per batch)."""

    def __init__(self, store: FeastFeatureStore) -> None:
        self.store, self.calls = store, 0

    def service(self, name):
        return self.store.service(name)

    def online(self, service, ids):
        self.calls += 1
        return self.store.online(service, ids)


def _request(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, len(REQUEST_FEATURES))).astype(np.float32)


@pytest.fixture
def copied_store(feast_repo, tmp_path):
    """A private copy of the example repository, for tests that change or break its data.
    Never `feast apply` a copy: Feast's registry keeps the original's absolute table paths,
    and applying drops the original's online table (build a repository of your own)."""
    root = tmp_path / "repo"
    shutil.copytree(feast_repo, root)
    text = (root / "definitions.py").read_text().replace(str(feast_repo), str(root))
    (root / "definitions.py").write_text(text)
    return FeastFeatureStore(root)


def test_request_columns_are_kept_and_the_rest_come_from_one_lookup(feature_store):
    ids = entity_ids(200)[:150]
    request = _request(len(ids))
    store = CountingStore(feature_store)
    result = Enricher(store, EnrichmentPolicy(SERVICE)).enrich(
        COLUMNS, ids, REQUEST_FEATURES, request
    )
    assert store.calls == 1
    assert result.ok.all() and not result.reasons
    latest = profile_values(200, DAYS - 1)[:150]
    np.testing.assert_array_equal(result.matrix[:, :12], latest)
    np.testing.assert_array_equal(result.matrix[:, 12:], request)
    assert result.service.name == SERVICE and result.looked_up == 150
    assert result.matrix.dtype == np.float32


def test_a_record_that_sends_every_column_needs_no_lookup(feature_store):
    store = CountingStore(feature_store)
    values = np.ones((3, len(COLUMNS)), np.float32)
    result = Enricher(store, EnrichmentPolicy(SERVICE)).enrich(
        COLUMNS, entity_ids(3), COLUMNS, values
    )
    assert store.calls == 0 and result.ok.all() and result.service is None


def test_an_unknown_entity_is_dead_lettered_by_name_under_the_default_rule(feature_store):
    ids = [*entity_ids(2), "customer-nobody"]
    result = Enricher(feature_store, EnrichmentPolicy(SERVICE)).enrich(
        COLUMNS, ids, REQUEST_FEATURES, _request(3)
    )
    assert result.ok.tolist() == [True, True, False]
    reason, detail = result.reasons[2]
    assert reason == FEATURE_MISSING
    assert "customer-nobody" in detail and "f00" in detail and f"{SERVICE}@" in detail
    assert result.missing == 1 and result.defaulted == 0


def test_the_defaults_rule_scores_the_row_with_its_defaults_and_counts_it(feature_store):
    policy = EnrichmentPolicy(SERVICE, rule=MissingRule.DEFAULTS, defaults={"f03": 2.5})
    result = Enricher(feature_store, policy).enrich(
        COLUMNS, ["customer-00001", "customer-nobody"], REQUEST_FEATURES, _request(2)
    )
    assert result.ok.all() and result.defaulted == 1 and result.missing == 1
    assert result.matrix[1, 3] == 2.5 and result.matrix[1, 0] == 0.0
    assert result.matrix[0, 0] == profile_values(200, DAYS - 1)[1, 0]


def test_the_retry_rule_finds_an_entity_written_while_it_waited(copied_store):
    def write_the_entity(_pause: float) -> None:
        import pandas as pd

        row = {"customer_id": ["customer-late"], "event_timestamp": [pd.Timestamp.now(tz="UTC")]}
        row |= {name: [float(j)] for j, name in enumerate(STORE_FEATURES)}
        copied_store.feast.write_to_online_store("customer_profile", pd.DataFrame(row))

    policy = EnrichmentPolicy(SERVICE, rule=MissingRule.RETRY, retries=2, backoff_s=0.0)
    result = Enricher(copied_store, policy, sleep=write_the_entity).enrich(
        COLUMNS, ["customer-late"], REQUEST_FEATURES, _request(1)
    )
    assert result.ok.all() and result.retries == 1
    assert result.matrix[0, :12].tolist() == [float(j) for j in range(12)]


def test_the_retry_rule_dead_letters_after_its_last_try(feature_store):
    pauses: list[float] = []
    policy = EnrichmentPolicy(SERVICE, rule=MissingRule.RETRY, retries=3, backoff_s=0.01)
    result = Enricher(feature_store, policy, sleep=pauses.append).enrich(
        COLUMNS, ["customer-nobody"], REQUEST_FEATURES, _request(1)
    )
    assert pauses == [0.01, 0.02, 0.04]
    assert not result.ok.any() and result.reasons[0][0] == FEATURE_MISSING


@pytest.mark.parametrize("rule", list(MissingRule))
def test_a_store_that_is_down_follows_the_rule(copied_store, rule):
    online_db = copied_store.repo_path / "data" / "online.db"
    online_db.unlink()
    online_db.mkdir()  # SQLite cannot open a directory: the store is down
    policy = EnrichmentPolicy(SERVICE, rule=rule, retries=1, backoff_s=0.0)
    result = Enricher(copied_store, policy, sleep=lambda _: None).enrich(
        COLUMNS, entity_ids(2), REQUEST_FEATURES, _request(2)
    )
    assert result.unavailable
    if rule is MissingRule.DEFAULTS:
        assert result.ok.all() and result.defaulted == 2
        assert (result.matrix[:, :12] == 0).all()
    else:
        assert not result.ok.any()
        assert {reason for reason, _ in result.reasons.values()} == {FEATURE_STORE_UNAVAILABLE}
        assert "online lookup of 2 entities" in result.reasons[0][1]


def test_no_store_configured_is_a_stated_dead_letter(feature_store):
    result = Enricher(None, EnrichmentPolicy(SERVICE)).enrich(
        COLUMNS, entity_ids(1), REQUEST_FEATURES, _request(1)
    )
    assert result.reasons[0][0] == FEATURE_STORE_UNAVAILABLE
    assert "DRIFTLINE_FEATURES_REPO" in result.reasons[0][1]


def test_a_column_neither_sent_nor_served_is_named(feature_store):
    columns = (*COLUMNS, "f99")
    result = Enricher(feature_store, EnrichmentPolicy(SERVICE)).enrich(
        columns, entity_ids(1), REQUEST_FEATURES, _request(1)
    )
    assert result.reasons[0][0] == FEATURES_UNSERVED and "f99" in result.reasons[0][1]


def test_a_changed_definition_is_noticed(feature_store):
    ref = feature_store.service(SERVICE)
    same = Enricher(feature_store, EnrichmentPolicy(SERVICE, version=ref.version))
    other = Enricher(feature_store, EnrichmentPolicy(SERVICE, version="0" * 12))
    args = (COLUMNS, entity_ids(1), REQUEST_FEATURES, _request(1))
    assert not same.enrich(*args).version_changed
    assert other.enrich(*args).version_changed


def test_a_view_version_follows_its_definition_not_its_timestamps(feature_store):
    view = feature_store.feast.get_feature_view("customer_profile")
    again = feature_store.feast.get_feature_view("customer_profile")
    assert view_version(view) == view_version(again)
    changed = feature_store.feast.get_feature_view("customer_profile")
    changed.ttl = dt.timedelta(days=30)
    assert view_version(changed) != view_version(view)


def test_erasing_an_entity_removes_it_from_the_online_store(copied_store):
    assert copied_store.online(SERVICE, ["customer-00007"]).found.all()
    assert copied_store.erase_online(["customer-00007"]) == len(STORE_FEATURES)
    assert not copied_store.online(SERVICE, ["customer-00007"]).found.any()
    assert copied_store.online(SERVICE, ["customer-00008"]).found.all()


def test_the_policy_round_trips_through_metadata():
    policy = EnrichmentPolicy(
        SERVICE, version="abc", rule=MissingRule.RETRY, defaults={"f01": 1.0}, retries=4
    )
    assert EnrichmentPolicy.from_metadata(policy.as_metadata()) == policy
    with pytest.raises(ValueError, match="'sometimes'"):
        EnrichmentPolicy(SERVICE, rule="sometimes")


def _feast_and_direct(store: FeastFeatureStore, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    ref = store.service(SERVICE)
    return store._online_feast(SERVICE, ref, ids), store._online_sqlite(ref, ids)


def test_the_direct_sqlite_read_answers_exactly_as_feast_does(copied_store):
    """The worker reads Feast's SQLite online store itself (Feast's own read is ~60x
    slower); both must give the same matrix: found, repeated, unknown and erased
    entities, in the order asked, and a value written after materialisation."""
    import pandas as pd

    copied_store.erase_online(["customer-00009"])
    row = {"customer_id": ["customer-00003"], "event_timestamp": [pd.Timestamp.now(tz="UTC")]}
    row |= {name: [100.0 + j] for j, name in enumerate(STORE_FEATURES)}
    copied_store.feast.write_to_online_store("customer_profile", pd.DataFrame(row))
    ids = ["customer-00005", "customer-nobody", "customer-00003", "customer-00005",
           "customer-00009", *entity_ids(200)[::7]]  # fmt: skip
    through_feast, direct = _feast_and_direct(copied_store, ids)
    np.testing.assert_array_equal(direct, through_feast)  # NaN where Feast has null
    assert np.isnan(direct[1]).all() and np.isnan(direct[4]).all()
    assert direct[2].tolist() == [100.0 + j for j in range(len(STORE_FEATURES))]
    assert direct[0].tolist() == direct[3].tolist() == profile_values(200, DAYS - 1)[5].tolist()
    assert copied_store.online(SERVICE, ids).found.tolist() == [
        not np.isnan(r).any() for r in through_feast
    ]


def test_the_direct_read_serves_the_features_a_service_projects_in_its_order(tmp_path):
    """A service that takes some of a view's features, in another order than the view."""
    # A repository of its own, not a copy: Feast's registry keeps each online table's
    # absolute path, and re-applying a copied repository drops the original's tables.
    root = write_example_repo(tmp_path / "repo", n_entities=200)
    text = (root / "definitions.py").read_text()
    text += (
        "\n\npartial = FeatureService(name='partial', "
        "features=[customer_profile[['f07', 'f02']]])\n"
    )
    (root / "definitions.py").write_text(text)
    apply_definitions(root)
    store = FeastFeatureStore(root)
    ref = store.service("partial")
    assert ref.feature_names == ("f07", "f02")
    ids = ["customer-00001", "customer-nobody", "customer-00002"]
    through_feast = store._online_feast("partial", ref, ids)
    np.testing.assert_array_equal(store._online_sqlite(ref, ids), through_feast)
    assert through_feast[0].tolist() == profile_values(200, DAYS - 1)[1, [7, 2]].tolist()


def test_a_missing_online_store_file_is_unavailable_and_not_created(copied_store):
    online_db = copied_store.repo_path / "data" / "online.db"
    online_db.unlink()
    with pytest.raises(FeatureStoreUnavailable, match="online lookup of 1 entities"):
        copied_store.online(SERVICE, ["customer-00001"])
    assert not online_db.exists()


def test_stored_values_decode_in_bulk_and_one_by_one_alike():
    from feast.protos.feast.types.Value_pb2 import Value

    from driftline.features.feast_store import _floats_of

    floats = [Value(float_val=v).SerializeToString() for v in (1.5, -2.25, 0.0, 3e38)]
    assert _floats_of(floats).tolist() == [1.5, -2.25, 0.0, np.float32(3e38)]
    mixed = [
        Value(float_val=1.5).SerializeToString(),
        Value(double_val=2.5).SerializeToString(),
        Value(int64_val=7).SerializeToString(),
        Value().SerializeToString(),  # null
        Value(string_val="x").SerializeToString(),
    ]
    decoded = _floats_of(mixed)
    assert decoded[:3].tolist() == [1.5, 2.5, 7.0] and np.isnan(decoded[3:]).all()
