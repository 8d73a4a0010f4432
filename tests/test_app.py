"""The real app, started as `python app.py`: its API through gradio_client, and its page in a real browser.

The Hub is offline, so the app runs on the bundled model, whatever that model is:
the tests check shapes and behaviour, never particular emoji.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from emojilm import links
from emojilm.engine import Engine
from emojilm.loadtest import free_port, start_app, stop_app
from emojilm.paths import BUNDLED_DIR
from emojilm.request import MAX_TEXT_CHARS
from emojilm.sources import ModelRegistry, SourceConfig
from emojilm.space import SpaceBackend

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


def test_the_app_starts_and_answers_behind_a_proxy(tmp_path):
    """The environment names a proxy (one that refuses every connection) and no NO_PROXY: the app
    still starts, since Gradio's start-up check of its own server goes to loopback directly."""
    proxy = f"http://127.0.0.1:{free_port()}"
    names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    env = {name: proxy for name in names} | {name.lower(): proxy for name in names} | {"NO_PROXY": "", "no_proxy": ""}
    with running_app(tmp_path, **env) as url:
        emoji, _ = translate(Client(url, verbose=False), "I love pizza", 0.0)
    assert emoji.strip()


def test_a_visitor_who_cancels_leaves_the_batch_and_the_others_get_their_answers(tmp_path, monkeypatch):
    """Concurrent gradio_client users of /translate (the app built in this process, to see its engine),
    one of whom cancels mid-answer: that answer's row leaves the batch at the next step, never reaching
    its end, and the others get the answers they get alone."""
    import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EMOJILM_CACHE", str(tmp_path / "cache"))
    registry = ModelRegistry(SourceConfig(hub_repo=""))
    backend = SpaceBackend(registry)
    first = registry.start()
    # The leaving answer is submitted without its EOS, so it can only end at its byte budget: cancelled,
    # it must stop short of it, whatever the model draws.
    budget, seed = 40, 0
    others = [(text, 0.9, 1.0, None, 16, 7) for text in ("so much snow", "a cup of coffee", "we won the game!")]
    submitted, submit, step = [], Engine.submit, Engine._step
    endless = []  # holds True while the next submission is the leaving one

    def recorded(self, model, prompt, request, eos_id=-1):
        submitted.append(submit(self, model, prompt, request, -1 if endless and endless.pop() else eos_id))
        return submitted[-1]

    def slow(self):  # a slow machine's steps: the answer is still going when it is cancelled
        time.sleep(0.1)
        step(self)

    monkeypatch.setattr(Engine, "submit", recorded)
    monkeypatch.setattr(Engine, "_step", slow)
    demo = app.build(backend, first).queue(default_concurrency_limit=1, max_size=32)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False)
        alone = [client.submit(*args, api_name="/translate").result(timeout=120) for args in others]
        submitted.clear()
        endless.append(True)
        leaving = client.submit("I love pizza", 2.0, 1.0, None, budget, seed, api_name="/translate")
        deadline = time.monotonic() + 60
        while not leaving.outputs() and time.monotonic() < deadline:  # its first characters are out
            time.sleep(0.02)
        # One client each, as visitors have: a cancel stops its own session's calls.
        staying = [Client(url, verbose=False).submit(*args, api_name="/translate") for args in others]
        leaving.cancel()
        assert [job.result(timeout=120)[0] for job in staying] == [emoji for emoji, _ in alone]
        row = submitted[0]
        while row in backend.engine.rows and time.monotonic() < deadline:
            time.sleep(0.05)
        assert row.cancelled.is_set() and row not in backend.engine.rows
        assert 0 < row.produced < budget
    finally:
        demo.close()


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


@pytest.fixture
def open_page(browser, server):
    """open_page(query) -> a fresh page on the app at that query string, with the clipboard allowed;
    fails the test on any uncaught JavaScript error."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 1600}, permissions=["clipboard-read", "clipboard-write"]
    )
    errors = []

    def open_(query: str):
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(error))
        page.goto(query if query.startswith("http") else server + query)
        return page

    yield open_
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def controls(page) -> dict[str, str]:
    """What the page's sampling controls show."""
    numbers = {name: page.get_by_role("spinbutton", name=f"number input for {name}") for name in
               ("Temperature", "Top-p", "Loops", "Max new bytes")}  # fmt: skip
    return {name: box.input_value() for name, box in numbers.items()} | {
        "Text": page.get_by_label("Text", exact=True).input_value(),
        "Seed": page.get_by_label("Seed").input_value(),
        "Model": page.get_by_label("Model").input_value(),
    }


def wait_for_answer(page, expected: str, link=re.compile("^http")) -> str:
    """Waits until the page has answered by itself (streamed, then the trace); returns the answer's link."""
    from playwright.sync_api import expect

    expect(page.locator("#elm-answer textarea")).to_have_value(expected, timeout=60_000)
    expect(page.locator(".elm-heatmap table tbody tr").first).to_be_visible(timeout=60_000)
    box = page.get_by_label("Link to this answer")
    expect(box).to_have_value(link, timeout=30_000)
    return box.input_value()


def test_a_link_answers_as_the_api_does_and_its_copied_link_gives_the_same_answer(open_page, client, server):
    from playwright.sync_api import expect

    expected, _ = translate(client, "a cup of coffee", 0.8, 0.9, 3, 64, 7)
    page = open_page("?text=a+cup+of+coffee&temperature=0.8&top_p=0.9&loops=3&seed=7")
    link = wait_for_answer(page, expected)
    shown = controls(page)
    assert shown == {"Temperature": "0.8", "Top-p": "0.9", "Loops": "3", "Max new bytes": "64",
                     "Text": "a cup of coffee", "Seed": "7", "Model": "bundled"}  # fmt: skip
    assert " · seed 7 · " in page.locator("#elm-summary").inner_text()
    assert page.locator(".elm-heatmap table tbody tr").count() == 3  # the trace of this request: 3 loops
    assert page.locator("#elm-link-note").inner_text().strip() == ""

    page.get_by_role("button", name="🔗 Copy link").click()
    expect(page.locator("#elm-copy-note")).to_have_text("✅ Link copied.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == link and copied.startswith(server)
    query = dict(parse_qsl(urlsplit(copied).query))
    assert query == {"text": "a cup of coffee", "temperature": "0.8", "top_p": "0.9", "loops": "3", "max_new": "64",
                     "seed": "7", "model": "bundled"}  # fmt: skip

    again = open_page(copied)
    assert wait_for_answer(again, expected) == copied
    assert controls(again) == shown


def test_a_bad_link_opens_on_its_text_with_the_good_values_and_says_what_it_left_out(open_page, client):
    from playwright.sync_api import expect

    text = "I love pizza and the sea. " * 800  # 20,800 characters: over the limit
    page = open_page(f"?text={text.replace(' ', '+')}&temperature=banana&loops=-3&model=nope&top_p=0.9")
    cut = text[:MAX_TEXT_CHARS]
    expected, summary = translate(client, cut, 0.0, 0.9, None, 64, None)  # greedy: any seed
    trained_loops = re.search(r"(\d+) loops", summary).group(1)  # the default
    wait_for_answer(page, expected, link=links.TOO_LONG)  # a link this long would not open everywhere
    shown = controls(page)
    assert shown["Text"] == cut
    assert (shown["Temperature"], shown["Top-p"], shown["Loops"], shown["Model"]) == (
        "0",
        "0.9",
        trained_loops,
        "bundled",
    )
    note = page.locator("#elm-link-note").inner_text()
    assert "\n" not in note.strip()
    assert all(name in note for name in ("temperature", "'banana'", "loops", "'-3'", "model", "'nope'", "text"))
    page.get_by_role("button", name="🔗 Copy link").click()  # there is no link: the note says why
    expect(page.locator("#elm-copy-note")).to_have_text(links.TOO_LONG)

    # The visitor's own translation leaves the link behind: its notes go.
    page.get_by_label("Text", exact=True).fill("I love pizza")
    page.get_by_role("button", name="Translate ✨").click()
    wait_for_answer(page, translate(client, "I love pizza", 0.0, 0.9, None, 64, None)[0])
    expect(page.locator("#elm-link-note")).to_have_text("")
    expect(page.locator("#elm-copy-note")).to_have_text("")


def test_page_moves_to_the_default_model_once_it_is_ready(browser, tmp_path):
    """The default model (here a server folder standing in for the Hub model) is still loading when
    the page opens: the page starts on the bundled model, then moves to it by itself."""
    from playwright.sync_api import expect

    late = tmp_path / "late-model"  # the bundled weights without their recorded template: the probe makes it slow
    late.mkdir()
    shutil.copy(BUNDLED_DIR / "consolidated.pth", late)
    params = json.loads((BUNDLED_DIR / "params.json").read_text())
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
