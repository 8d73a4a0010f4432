"""The real app, started as `python app.py`: its API through gradio_client, and its page in a real browser.

The Hub is offline, so the app runs on the bundled model, whatever that model is:
the tests check shapes and behaviour, never particular emoji.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from emojilm.loadtest import start_app, stop_app

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@contextlib.contextmanager
def running_app(tmp: Path, **env_changes: str):
    """`python app.py` on a free port with the Hub offline; yields its URL."""
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf-home"),
        "EMOJILM_HUB_WAIT": "1",
        "EMOJILM_CACHE": str(tmp / "emojilm-cache"),
        "OMP_NUM_THREADS": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        **env_changes,
    }
    process, url = start_app(tmp / "app.log", env, app_args=())
    try:
        yield url
    finally:
        stop_app(process)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The URL of `python app.py` running on the bundled model (the Hub is offline)."""
    with running_app(tmp_path_factory.mktemp("app")) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def translate(client: Client, text, *args) -> tuple[str, str]:
    emoji, summary = client.predict(text, *args, api_name="/translate")
    return emoji, summary


# --- the API ---------------------------------------------------------------------------------------


def test_translate(client):
    emoji, summary = translate(client, "I love pizza", 0.0, 1.0, None, 64, None)
    assert isinstance(emoji, str) and emoji.strip()
    assert "bytes" in summary and "loops" in summary


def test_trace(client):
    result = client.predict("I love pizza", 0.0, 1.0, None, 64, None, api_name="/trace")
    assert set(result) == {"output", "by_loop", "per_loop_outputs", "summary"}
    assert result["output"] == translate(client, "I love pizza", 0.0)[0]  # greedy: the same answer both ways
    n_loops = max(row["loop"] for row in result["by_loop"])
    assert [row["loops"] for row in result["per_loop_outputs"]] == list(range(1, n_loops + 1))
    assert [row["loop"] for row in result["summary"]] == list(range(1, n_loops + 1))
    assert {"output", "same_as_final"} <= set(result["per_loop_outputs"][0])
    assert {"char", "p_final_char", "top_char", "top5"} <= set(result["by_loop"][0])


@pytest.mark.parametrize(
    "args, message",
    [
        (("",), "Type some text"),
        (("x" * 20_001,), "20,001 characters"),
        (("hi", 5), "temperature"),
        (("hi", 0.0, 0), "top_p"),
        (("hi", 0.0, 1.0, 99), "loops"),
        (("hi", 0.0, 1.0, None, 0), "max_new_tokens"),
        (("hi", 0.0, 1.0, None, 64, -5), "seed"),
        ((12345,), "text must be a string"),
    ],
    ids=["empty", "too-long", "temperature", "top_p", "loops", "max_new_tokens", "seed", "text-not-a-string"],
)
def test_bad_input_gets_a_clear_error_and_the_server_keeps_serving(client, args, message):
    with pytest.raises(AppError, match=message):
        translate(client, *args)
    assert translate(client, "I love pizza")[0].strip()


@pytest.mark.parametrize(
    "text",
    ["\u202eRTL", "👩‍👩‍👧", "a\x00b", "🍕🍕🍕", ("I love pizza and the sea. " * 200)[:5000]],
    ids=["rtl-override", "zwj-family", "nul-byte", "emoji-only", "5000-chars"],
)
def test_odd_unicode_gets_a_result(client, text):
    emoji, summary = translate(client, text)
    assert isinstance(emoji, str)
    assert "bytes" in summary


# --- the page in a real browser --------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium on PATH")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the app; fails the test on any uncaught JavaScript error."""
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(server)
    page.get_by_label("Text", exact=True).wait_for()
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_page_translates_and_shows_the_loops(page):
    from playwright.sync_api import expect

    page.get_by_label("Text", exact=True).fill("I love pizza")
    page.get_by_role("button", name="Translate ✨").click()

    answer = page.locator("#elm-answer textarea")
    expect(answer).to_have_value(re.compile(r"\S"), timeout=60_000)
    heatmap_rows = page.locator(".elm-heatmap table tbody tr")
    expect(heatmap_rows.first).to_be_visible(timeout=60_000)
    per_loop_rows = page.get_by_role("grid", name="Answer when stopped after k loops").get_by_role("row")
    per_loop_rows = per_loop_rows.filter(has=page.get_by_role("gridcell"))
    expect(per_loop_rows.first).to_be_visible(timeout=60_000)

    n_loops = int(page.get_by_role("spinbutton", name="number input for Loops").input_value())
    expect(heatmap_rows).to_have_count(n_loops)
    expect(per_loop_rows).to_have_count(n_loops)
    expect(page.locator("#elm-plot svg.marks")).to_be_visible()
    assert float(answer.evaluate("el => parseFloat(getComputedStyle(el).fontSize)")) >= 32  # the answer is large

    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=DOCS / "screenshot.png", full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)  # let the plot re-lay itself out
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    page.screenshot(path=DOCS / "screenshot-mobile.png", full_page=True)


def test_page_shows_an_error_for_empty_text(page):
    from playwright.sync_api import expect

    page.get_by_role("button", name="Translate ✨").click()
    expect(page.get_by_text("Type some text to translate into emoji.")).to_be_visible(timeout=30_000)
    expect(page.locator("#elm-answer textarea")).to_have_value("")


def test_page_moves_to_the_default_model_once_it_is_ready(browser, tmp_path):
    """The default model (here a server folder standing in for the Hub model) is still loading when
    the page opens: the page starts on the bundled model, then moves to it by itself."""
    from playwright.sync_api import expect

    late = tmp_path / "late-model"  # the bundled weights without their recorded template: the probe makes it slow
    late.mkdir()
    shutil.copy(ROOT / "assets" / "bundled" / "consolidated.pth", late)
    params = json.loads((ROOT / "assets" / "bundled" / "params.json").read_text())
    params.pop("emojilm")
    (late / "params.json").write_text(json.dumps(params))

    with running_app(tmp_path, EMOJILM_REPO=str(late), EMOJILM_HUB_WAIT="0") as url:
        page = browser.new_page()
        page.goto(url)
        model = page.get_by_label("Model")
        expect(model).to_have_value(str(late), timeout=90_000)
        expect(page.locator("#elm-status")).to_contain_text(f"{late} is ready", timeout=30_000)

        model.click()  # the visitor can still pick a model (it is then never switched for them)
        page.get_by_role("option", name="bundled").click()
        expect(page.locator("#elm-status")).to_have_text("bundled is ready.", timeout=30_000)
        page.wait_for_timeout(2_000)
        expect(model).to_have_value("bundled")
        page.close()
