"""The live dashboard in a real browser (Debian's Chromium, driven by Playwright): it shows
traffic, a canary and a drift rollback as they happen, with no reload."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import produce_at_rate, synthetic_records
from driftline.streams.kafka.producer import FeatureProducer
from tests.integration.debian_tools import chromium
from tests.integration.helpers import wait_until, write_model
from tests.integration.test_policy import drift_event, publish

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# Screenshots outlive the run here (ignored by git); DRIFTLINE_TEST_ARTIFACTS moves them.
ARTIFACTS = Path(os.environ.get("DRIFTLINE_TEST_ARTIFACTS", REPO / ".cache" / "test-artifacts"))
SHOWS_WITHIN_MS = 15_000  # each change is on the page within this, without a reload


def _traffic(settings, bootstrap: str, stop: threading.Event) -> None:
    producer = FeatureProducer(settings, bootstrap)
    seed = 0
    while not stop.is_set():
        seed += 1
        records = synthetic_records(model="demo", count=100, entities=50, seed=seed, n_features=16)
        produce_at_rate(producer, records, rate=400)


def test_the_page_shows_traffic_a_canary_and_a_drift_rollback(stack_env, start_worker, tmp_path):
    settings = stack_env.settings()
    worker = start_worker()
    commands = ModelCommands.from_settings(settings)
    versions = []
    for seed in (1, 2, 3):
        version, _ = commands.register(write_model(tmp_path, seed=seed), "demo", actor="alice")
        versions.append(version.version)
    v1, v2, v3 = versions
    commands.promote("demo", v1, actor="bob")
    commands.promote("demo", v2, actor="bob")
    wait_until(
        lambda: worker.get("/driftline/models/").get("demo", {}).get("version") == v2,
        what="v2 served",
    )
    stop = threading.Event()
    producing = threading.Thread(
        target=_traffic, args=(settings, stack_env.bootstrap, stop), daemon=True
    )
    producing.start()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(chromium()), args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(worker.url + "/driftline/dashboard/")
            arms, audit = page.locator("#arms"), page.locator("#audit")
            expect(arms).to_contain_text("champion", timeout=SHOWS_WITHIN_MS)
            expect(arms).to_contain_text(f"v{v2}")
            page.wait_for_function(
                "Number(document.getElementById('throughput').dataset.points) >= 5",
                timeout=SHOWS_WITHIN_MS,
            )
            expect(page.locator("#throughput-now")).not_to_have_text("now 0 predictions/s")

            commands.send("validate", "demo", v3, "alice")
            commands.send("canary", "demo", v3, "alice", {"percent": "20"})
            expect(arms).to_contain_text("canary", timeout=SHOWS_WITHIN_MS)
            expect(arms).to_contain_text("20.00%")
            expect(page.locator("#canary")).to_contain_text(
                "canary_started", timeout=SHOWS_WITHIN_MS
            )
            page.screenshot(path=str(ARTIFACTS / "dashboard-canary.png"), full_page=True)

            started = time.monotonic()
            publish(settings, stack_env.bootstrap, drift_event("demo", v2, "champion", "error"))
            expect(audit).to_contain_text("rolled_back", timeout=SHOWS_WITHIN_MS)
            expect(page.locator("#drift")).to_contain_text("adwin", timeout=SHOWS_WITHIN_MS)
            page.wait_for_function(
                "[...document.querySelectorAll('#arms tbody tr')].some(r => "
                f"r.textContent.includes('champion') && r.textContent.includes('v{v1}'))",
                timeout=SHOWS_WITHIN_MS,
            )
            print(f"drift event -> rollback on the page: {time.monotonic() - started:.1f}s")
            expect(page.locator("#verify")).to_contain_text("intact")
            page.screenshot(path=str(ARTIFACTS / "dashboard-rollback.png"), full_page=True)
            browser.close()
    finally:
        stop.set()
        producing.join(timeout=10)
    assert (ARTIFACTS / "dashboard-rollback.png").stat().st_size > 10_000
    shutil.copy(ARTIFACTS / "dashboard-rollback.png", tmp_path / "dashboard-rollback.png")
