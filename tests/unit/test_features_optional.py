"""The core runs without the ``driftline[feast]`` extra: Feast is imported only where a
feature repository is configured, and its absence then says what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Runs in a fresh interpreter where any import of feast fails, as on a machine without it.
_WITHOUT_FEAST = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoFeast(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "feast" or name.startswith("feast."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoFeast())
    """
)


def _run(body: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_FEAST + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_worker_cli_and_enrichment_import_without_feast():
    done = _run(
        """
        import driftline.streams.app.faust_app, driftline.streams.cli.main
        import driftline.features.enrichment, driftline.features.datasets
        from driftline.features.configured import open_feature_store
        assert open_feature_store(None) is None
        assert not any(m == "feast" or m.startswith("feast.") for m in sys.modules)
        print("ok")
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_a_configured_repository_without_feast_says_what_to_install(tmp_path):
    done = _run(
        f"""
        from driftline.features.configured import open_feature_store
        from driftline.features.exceptions import FeatureStoreError
        try:
            open_feature_store({str(tmp_path)!r})
        except FeatureStoreError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pip install 'driftline[feast]'" in done.stdout and str(tmp_path) in done.stdout


def test_the_features_demo_without_feast_says_what_to_install():
    done = _run(
        """
        from driftline.streams.cli.main import main
        main(["demo", "--features"])
        """
    )
    assert done.returncode != 0
    assert "pip install 'driftline[feast]'" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
