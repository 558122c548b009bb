"""Heavy libraries load only where they are used: a worker that does not train never
imports scikit-learn or skl2onnx, and the drift package loads neither ClickHouse nor
cryptography. Each check runs in a fresh interpreter, since this one has imported them all."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = [
    "sklearn",
    "skl2onnx",
    "pandas",
    "clickhouse_connect",
    "cryptography",
    "faust",
    "river",
    "sqlalchemy",
]


def _loaded_after(code: str) -> set[str]:
    report = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    probe = f"{code}\nimport json, sys\n{report}"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_drift_package_loads_neither_the_store_nor_the_key_libraries():
    loaded = _loaded_after(
        "import driftline.drift, driftline.drift.monitor, driftline.drift.decider, "
        "driftline.drift.catalog, driftline.drift.window_tests, driftline.drift.profile"
    )
    assert loaded == set()


def test_a_worker_with_river_detectors_imports_no_training_library():
    loaded = _loaded_after(
        "import driftline.streams.cli.main, driftline.streams.app.faust_app\n"
        "import driftline.streams.app.runtime, driftline.streams.app.worker\n"
        "from driftline.drift.catalog import DETECTORS, make_detector\n"
        "detectors = [make_detector(name) for name in DETECTORS]\n"
        "for d in detectors:\n"
        "    d.restore(d.clone().snapshot())"
    )
    assert "river" in loaded  # the detectors are River's
    assert loaded.isdisjoint({"sklearn", "skl2onnx", "pandas", "sqlalchemy"})


def test_the_drift_decider_loads_river_when_built_not_at_its_first_fold():
    code = (
        "from driftline.streams.stages.drift_decider import DriftDecider\n"
        "import sys\n"
        "assert 'river.drift' not in sys.modules\n"
        "from driftline.drift.config import DriftConfig\n"
        "from driftline.streams.testing import StageRig\n"
        "StageRig().drift_decider(DriftConfig())\n"
        "assert 'river.drift' in sys.modules"
    )
    assert "sqlalchemy" not in _loaded_after(code)


def test_river_keeps_its_scikit_learn_helper_where_scikit_learn_is_already_loaded():
    loaded = _loaded_after(
        "import sklearn\n"
        "from driftline.drift.catalog import make_detector\n"
        "make_detector('adwin')\n"
        "import river.stream\n"
        "assert hasattr(river.stream, 'iter_sklearn_dataset')"
    )
    assert {"sklearn", "river"} <= loaded


def test_river_keeps_its_sql_helper_where_sqlalchemy_is_already_loaded():
    loaded = _loaded_after(
        "import sqlalchemy\n"
        "from driftline.drift.catalog import make_detector\n"
        "make_detector('adwin')\n"
        "import river.stream\n"
        "assert hasattr(river.stream, 'iter_sql')"
    )
    assert {"sqlalchemy", "river"} <= loaded


@pytest.mark.parametrize("name", ["TrainedModel", "train_logistic", "train_gbm"])
def test_training_loads_on_first_use(name):
    loaded = _loaded_after(f"import driftline.inference as i\nassert callable(i.{name})")
    assert {"sklearn", "skl2onnx"} <= loaded
    assert _loaded_after("import driftline.inference").isdisjoint({"sklearn", "skl2onnx"})


def test_no_driftline_import_changes_the_warnings_filters():
    probe = (
        "import importlib, pkgutil, warnings\n"
        "import faust, river.drift, clickhouse_connect, onnxruntime, sklearn, requests\n"
        "import openlineage.client\n"  # theirs first: they set filters of their own
        "import feast\n"  # the feast extra: the features package and its demo import it
        "before = list(warnings.filters)\n"
        "for package in ('core', 'schemas', 'inference', 'drift', 'lineage', 'features',\n"
        "                'streams'):\n"
        "    root = importlib.import_module('driftline.' + package)\n"
        "    for info in pkgutil.walk_packages(root.__path__, root.__name__ + '.'):\n"
        "        if not info.name.endswith('__main__'):\n"
        "            importlib.import_module(info.name)\n"
        "print(warnings.filters == before)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "True"
