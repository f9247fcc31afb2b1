"""A real browser on the real labelling page: play, answer by key and by click, undo, store.

Runs headless Debian ``chromium`` through Playwright (``make test`` installs it with apt-get
when root on Debian); skipped with the reason otherwise. The screenshot goes to the test's tmp folder; with
``CQTML_UPDATE_SCREENSHOTS=1`` it replaces the README's ``docs/img/labelling.png`` (a test run
never changes the checkout otherwise).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from cqtml_env import PreferenceDataset, make_dataset
from cqtml_env.cli import prefs as prefs_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

pytest.importorskip("fastapi", reason="the labelling page needs the 'label' extra")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip(
        "Debian chromium not found (apt-get install -y chromium; `make test` does it as root)",
        allow_module_level=True,
    )


@pytest.fixture
def server(tmp_path):
    from cqtml_env.labelling.app import ThreadedServer, create_app
    from cqtml_env.labelling.service import LabellingService, ServiceConfig

    svc = LabellingService(
        make_dataset("synthetic:4"),
        tmp_path / "store",
        config=ServiceConfig(candidates_per_clip=6, pairs_per_clip=2, prefetch=2),
    )
    srv = ThreadedServer(create_app(svc)).start()
    yield svc, srv
    srv.stop()
    svc.close()


def wait_for(page, fn: str, arg=None, timeout: float = 20.0):
    """Poll ``fn`` (a JS function) until truthy; functions run under the page's strict CSP,
    which refuses the string eval that ``page.wait_for_function`` uses."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = page.evaluate(fn, arg)
        if v:
            return v
        time.sleep(0.03)
    raise AssertionError(f"timed out waiting for {fn}")


def current(page) -> str:
    return page.evaluate("() => window.cqtml.pair && window.cqtml.pair.pair_id")


def wait_new_pair(page, old: str) -> str:
    return wait_for(
        page,
        "(old) => window.cqtml.pair && window.cqtml.pair.pair_id !== old && !window.cqtml.busy"
        " && window.cqtml.pair.pair_id",
        old,
    )


@pytest.mark.slow
def test_page_play_answer_by_key_and_click_undo(server, tmp_path):
    svc, srv = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 560})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{srv.url}/?labeller=tester")
            wait_for(page, "() => window.cqtml.pair !== null")
            first = current(page)
            # play: the audio element runs and the lamps follow its clock
            page.keyboard.press(" ")
            wait_for(page, "() => document.getElementById('audio').currentTime > 1.2")
            page.keyboard.press(" ")
            assert page.evaluate("() => document.getElementById('audio').paused")
            lit = page.evaluate(
                """() => { const c = document.getElementById('show-a').getContext('2d');
                const d = c.getImageData(0, 0, 440, 150).data; let s = 0;
                for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
                return s; }"""
            )
            assert lit > 0
            played = page.evaluate(
                "() => window.cqtml.covered.reduce((a, b) => a + b, 0) / window.cqtml.covered.length"
            )
            assert 0.15 < played < 0.6
            shot = (ROOT / "docs" / "img" / "labelling.png"
                    if os.environ.get("CQTML_UPDATE_SCREENSHOTS") == "1"
                    else tmp_path / "labelling.png")
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot))
            try:  # keep the README picture small: a 128-colour palette
                from PIL import Image

                Image.open(shot).convert("RGB").quantize(128).save(shot, optimize=True)
            except ImportError:  # pragma: no cover
                pass
            assert 5_000 < shot.stat().st_size < 400_000
            page.keyboard.press("a")  # by key
            second = wait_new_pair(page, first)
            page.click("#btn-b")  # by click
            third = wait_new_pair(page, second)
            page.click("#btn-tie")
            fourth = wait_new_pair(page, third)
            page.keyboard.press("u")  # undo: the tie on the third pair
            assert wait_new_pair(page, fourth) == third
            wait_for(page, "() => document.getElementById('status').textContent.includes('undone')")
            page.keyboard.press("b")
            again = wait_new_pair(page, third)
            page.keyboard.press("s")  # skip: journaled, not a label
            wait_new_pair(page, again)
            assert "labelled" in page.inner_text("#progress")
            assert errors == []
        finally:
            browser.close()
    srv.stop()
    svc.close()
    store = tmp_path / "store"
    ds = PreferenceDataset(store)
    assert ds.validate() == [] and prefs_cli.main(["validate", str(store)]) == 0
    arr, meta = ds.load(), ds.label_meta()
    assert [(m["pair"], m["choice"]) for m in meta] == [(first, "a"), (second, "b"), (third, "b")]
    assert arr.label.tolist() == [1.0, 0.0, 0.0]
    assert arr.pairs.shape == (3, 2) and arr.actions.shape[1:] == (4, arr.cqt.shape[-1])
    assert {m["labeller"] for m in meta} == {"tester"}
    assert set(arr.labeller.tolist()) == {ds.manifest["labellers"].index("human")}
    assert meta[0]["played_fraction"] > 0.15 and not meta[0]["both_played"]
    assert len({m["pair"] for m in meta}) == len(meta)  # no duplicates
    for i, j in arr.pairs:  # the two shows of every stored pair differ
        assert not np.array_equal(arr.actions[i], arr.actions[j])
