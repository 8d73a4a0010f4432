"""The Space's logic without a browser: request checking, model sources, and what the page shows."""

from __future__ import annotations

import math
import threading
import time
from html.parser import HTMLParser
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from emojilm import sources, views
from emojilm.config import ConfigFields
from emojilm.generation import Generation
from emojilm.layout import KeyFamily
from emojilm.lm import Anatomy, ModelInfo
from emojilm.request import MAX_NEW_TOKENS, MAX_TEXT_CHARS
from emojilm.sources import BUNDLED, DEFAULT_REPO, ModelRegistry, PageState, SourceConfig
from emojilm.space import parse_request
from emojilm.speculative import DraftStats
from emojilm.trace import BY_LOOP_COLUMNS, Trace, summarize
from tests.conftest import tiny_params

N_LOOPS = 3


def fake_lm(n_loops: int = N_LOOPS, max_seqlen: int = 1024) -> SimpleNamespace:
    """What parse_request reads from a model: its trained loop count and its context length."""
    return SimpleNamespace(n_loops=n_loops, model=SimpleNamespace(args=SimpleNamespace(max_seqlen=max_seqlen)))


# --- parse_request -------------------------------------------------------------------------------


def test_parse_request_converts_valid_values():
    request = parse_request(fake_lm(), "I love pizza", "0.7", 0.9, "4", 32.0, "42", True, "0.1")
    assert request.text == "I love pizza"
    assert (request.temperature, request.top_p, request.adaptive_threshold) == (0.7, 0.9, 0.1)
    assert (request.n_loops, request.max_new_tokens, request.seed) == (4, 32, 42)
    assert all(isinstance(v, int) for v in (request.n_loops, request.max_new_tokens, request.seed))


def test_parse_request_fills_in_missing_values():
    request = parse_request(fake_lm(), "hi", None, None, None, None, None)
    assert (request.temperature, request.top_p, request.n_loops, request.max_new_tokens) == (0.0, 1.0, N_LOOPS, 64)


@pytest.mark.parametrize(
    "text, temperature, top_p, loops, max_new_tokens",
    [
        ("x" * MAX_TEXT_CHARS, 0.0, 1.0, 1, 1),
        ("hi", 2.0, 0.01, 2 * N_LOOPS, MAX_NEW_TOKENS),
    ],
    ids=["lower-limits", "upper-limits"],
)
def test_parse_request_accepts_the_limits(text, temperature, top_p, loops, max_new_tokens):
    request = parse_request(fake_lm(), text, temperature, top_p, loops, max_new_tokens)
    assert (request.n_loops, request.max_new_tokens) == (loops, max_new_tokens)


BAD_VALUES = [
    ("text", ""),
    ("text", " \n\t "),
    ("text", 42),
    ("text", None),
    ("text", "x" * (MAX_TEXT_CHARS + 1)),
    ("temperature", -1),
    ("temperature", 2.5),
    ("temperature", math.nan),
    ("temperature", math.inf),
    ("temperature", "abc"),
    ("top_p", 0),
    ("top_p", 1.5),
    ("loops", 0),
    ("loops", 2 * N_LOOPS + 1),
    ("loops", 1.5),
    ("max_new_tokens", 0),
    ("max_new_tokens", MAX_NEW_TOKENS + 1),
    ("seed", "x"),
    ("seed", -5),
    ("seed", 2**31),
    ("threshold", -0.5),
]


@pytest.mark.parametrize("name, value", BAD_VALUES, ids=[f"{n}={str(v)[:12]!r}" for n, v in BAD_VALUES])
def test_parse_request_names_the_bad_value(name, value):
    values = {"text": "I love pizza", "adaptive": True} | {name: value}
    with pytest.raises(ValueError, match=name):
        parse_request(fake_lm(), **values)


@pytest.mark.parametrize("seed", [None, "", -1])
def test_a_missing_seed_becomes_a_random_valid_one(seed):
    seeds = {parse_request(fake_lm(), "hi", seed=seed).seed for _ in range(20)}
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in seeds)
    assert len(seeds) > 1


@pytest.mark.parametrize("seed", ["-1", -1.0, "-1.0"])
def test_minus_one_as_a_string_or_a_float_is_a_random_seed_too(seed):  # what a link sends, or a float widget
    assert len({parse_request(fake_lm(), "hi", seed=seed).seed for _ in range(20)}) > 1


def test_adaptive_off_means_no_threshold():
    assert parse_request(fake_lm(), "hi", adaptive=False, threshold=0.5).adaptive_threshold == 0.0
    assert parse_request(fake_lm(), "hi", adaptive=False, threshold="not even a number").adaptive_threshold == 0.0


def test_max_new_tokens_is_capped_by_a_short_context():
    request = parse_request(fake_lm(max_seqlen=64), "hi", max_new_tokens=MAX_NEW_TOKENS)
    assert 1 <= request.max_new_tokens < 64


# --- SourceConfig and ModelRegistry --------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("EMOJILM_REPO", "EMOJILM_REVISION", "EMOJILM_EXTRA_SOURCES", "EMOJILM_HUB_WAIT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "env, overrides, allowed",
    [
        ({}, {}, (DEFAULT_REPO, BUNDLED)),
        ({"EMOJILM_REPO": "me/my-emoji-model"}, {}, ("me/my-emoji-model", BUNDLED)),
        ({"EMOJILM_REPO": ""}, {}, (BUNDLED,)),
        ({"EMOJILM_REPO": "me/model"}, {"hub_repo": ""}, (BUNDLED,)),
        ({"EMOJILM_EXTRA_SOURCES": " a/b , /srv/x ,,bundled"}, {}, (DEFAULT_REPO, BUNDLED, "a/b", "/srv/x")),
    ],
    ids=["default", "repo-from-env", "empty-repo-disables-hub", "cli-override-disables-hub", "extra-sources"],
)
def test_source_config_allow_list(clean_env, env, overrides, allowed):
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert SourceConfig.from_env(**overrides).allowed == allowed


@pytest.mark.parametrize("source", ["/etc", "some/otherrepo", "../assets/bundled", "", "bundled/../.."])
def test_registry_refuses_sources_outside_the_allow_list(source):
    registry = ModelRegistry(SourceConfig(hub_repo="", extra_sources=("a/b",)))
    with pytest.raises(ValueError, match="must be one of"):
        registry.get(source)


def test_unreachable_hub_falls_back_to_the_bundled_model(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    registry = ModelRegistry(SourceConfig(hub_repo=DEFAULT_REPO, hub_wait_s=5.0))

    started = time.monotonic()
    first = registry.start()
    assert first == BUNDLED
    assert time.monotonic() - started < 15  # offline, the Hub fails at once; the rest is loading the bundled model
    assert registry.default == BUNDLED

    status = registry.status(DEFAULT_REPO)
    assert "could not be loaded" in status
    assert "\n" not in status and "Traceback" not in status and "Error" not in status
    page = registry.page_state(BUNDLED, chosen=False)
    assert page == PageState(BUNDLED, f"Using the bundled demo model: {status}", polling=False)  # nothing to wait for
    with pytest.raises(ValueError, match="could not be loaded"):
        registry.get(DEFAULT_REPO)  # what the page shows when someone picks it

    assert registry.status(BUNDLED) == "bundled is ready."
    lm = registry.get(BUNDLED)
    text = lm.translate("I love pizza", max_new_tokens=32).text
    assert isinstance(text, str) and text.strip()


def slow_hub_registry(monkeypatch, release: threading.Event, *, fails: bool = True, hub_wait_s: float = 0.1,
                      on_start=None) -> ModelRegistry:  # fmt: skip
    """A registry whose Hub model "slow/hub-model" finishes loading once `release` is set (then
    raising ConnectionError("gave up") if `fails`); on_start(progress, other keyword arguments
    of emojilm.load) runs as its load begins."""

    def load(source, progress=None, **kwargs):
        if source == "slow/hub-model":
            if on_start:
                on_start(progress, kwargs)
            release.wait(30)
            if fails:
                raise ConnectionError("gave up")
        return SimpleNamespace(source=source, info=SimpleNamespace(note=""))

    monkeypatch.setattr(sources.emojilm, "load", load)
    return ModelRegistry(SourceConfig(hub_repo="slow/hub-model", hub_wait_s=hub_wait_s))


def test_a_slow_hub_does_not_hold_up_the_start(monkeypatch):
    release = threading.Event()
    registry = slow_hub_registry(monkeypatch, release, hub_wait_s=0.3)
    try:
        started = time.monotonic()
        assert registry.start() == BUNDLED
        assert time.monotonic() - started < 5
        assert "still loading" in registry.status("slow/hub-model")
        with pytest.raises(ValueError, match="still loading"):
            registry.get("slow/hub-model")
        assert registry.get(BUNDLED).source == BUNDLED
    finally:
        release.set()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_status_shows_the_download_progress(monkeypatch):
    release, reported = threading.Event(), threading.Event()

    def report(progress, _):
        progress("params.json", 1_234, 1_234)
        progress("consolidated.pth", 412_000_000, 1_236_000_000)
        reported.set()

    registry = slow_hub_registry(monkeypatch, release, on_start=report)
    try:
        assert registry.start() == BUNDLED
        assert reported.wait(10)
        status = registry.status("slow/hub-model")
        assert status == "slow/hub-model is still loading: downloading consolidated.pth, 412.0 MB of 1.2 GB (33 %)…"
        page = registry.page_state(BUNDLED, chosen=False)
        assert page == PageState(BUNDLED, f"Using the bundled demo model: {status}", polling=True)
    finally:
        release.set()
    wait_for(lambda: not registry.page_state(BUNDLED, chosen=False).polling)
    assert registry.page_state(BUNDLED, False).note.endswith("slow/hub-model could not be loaded: gave up")


def test_status_names_each_loading_phase(monkeypatch):
    release, downloaded, probing = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def phases(progress, kwargs):
        seen.update(kwargs)
        progress("consolidated.pth", 1_236_000_000, 1_236_000_000)
        downloaded.set()
        probing.wait(10)
        kwargs["probing"](5, 11)
        downloaded.clear()
        downloaded.set()

    registry = slow_hub_registry(monkeypatch, release, on_start=phases)
    try:
        registry.start()
        assert downloaded.wait(10)
        assert "reading and converting the weights" in registry.status("slow/hub-model")
        downloaded.clear()
        probing.set()
        wait_for(lambda: "probing" in registry.status("slow/hub-model"))
        assert "still loading: probing variants: pass 5 of at most 11 (" in registry.status("slow/hub-model")
        assert seen["loop_mode"] is None and seen["template"] is None  # nothing pinned
    finally:
        release.set()


def test_pins_reach_the_hub_model_only(monkeypatch):
    calls = {}

    def load(source, **kwargs):
        calls[source] = kwargs
        raise ConnectionError("offline")

    monkeypatch.setattr(sources.emojilm, "load", load)
    monkeypatch.setenv("EMOJILM_LOOP_MODE", "inject_embeddings")
    monkeypatch.setenv("EMOJILM_TEMPLATE", "tab")
    registry = ModelRegistry(SourceConfig.from_env(hub_repo="a/b", hub_wait_s=5.0))
    registry.start()
    wait_for(lambda: len(calls) == 2)
    assert (calls["a/b"]["loop_mode"], calls["a/b"]["template"]) == ("inject_embeddings", "tab")
    assert "loop_mode" not in calls[BUNDLED]  # the bundled model records its own variant


@pytest.mark.parametrize(
    "name, value, message",
    [("EMOJILM_LOOP_MODE", "residual", "none, add, add_skip_first, inject_embeddings, gated"),
     ("EMOJILM_TEMPLATE", "no slot", "newline")],
)  # fmt: skip
def test_bad_pins_name_the_allowed_values(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        SourceConfig.from_env()


def test_the_page_moves_to_the_hub_model_once_it_is_ready_unless_the_visitor_chose(monkeypatch):
    release = threading.Event()
    registry = slow_hub_registry(monkeypatch, release, fails=False)
    assert registry.start() == BUNDLED
    page = registry.page_state(BUNDLED, chosen=False)
    assert page.source == BUNDLED and page.polling and "still loading" in page.note

    release.set()
    wait_for(lambda: registry.default == "slow/hub-model")
    assert registry.page_state(BUNDLED, chosen=False) == PageState(
        "slow/hub-model", "slow/hub-model is ready: now using it.", polling=False, redescribe=True
    )
    assert registry.page_state("slow/hub-model", chosen=False).note == "slow/hub-model is ready."
    assert registry.page_state(BUNDLED, chosen=True) == PageState(BUNDLED, "bundled is ready.", polling=False)
    assert registry.get("slow/hub-model").source == "slow/hub-model"


def test_a_model_picked_while_it_loads_is_described_once_ready(monkeypatch):
    release = threading.Event()
    registry = slow_hub_registry(monkeypatch, release, fails=False)
    assert registry.start() == BUNDLED
    picked = registry.page_state("slow/hub-model", chosen=True, described=BUNDLED)
    assert (picked.source, picked.polling, picked.redescribe) == ("slow/hub-model", True, False)  # nothing to show yet

    release.set()
    wait_for(lambda: registry.default == "slow/hub-model")
    assert registry.page_state("slow/hub-model", chosen=True, described=BUNDLED).redescribe  # the slider and info
    assert not registry.page_state("slow/hub-model", chosen=True, described="slow/hub-model").redescribe


def test_picking_a_failed_model_loads_it_again_and_the_page_polls_until_it_is_done(monkeypatch):
    release = threading.Event()
    registry = slow_hub_registry(monkeypatch, release)
    assert registry.start() == BUNDLED
    release.set()
    wait_for(lambda: not registry.page_state(BUNDLED, chosen=False).polling)  # the first load failed

    release.clear()  # the retry waits
    with pytest.raises(ValueError, match=r"could not be loaded: gave up\. Trying again in the background"):
        registry.get("slow/hub-model")
    page = registry.page_state("slow/hub-model", chosen=True, described=BUNDLED)
    assert page.polling and "still loading" in page.note and not page.redescribe
    release.set()
    wait_for(lambda: not registry.page_state("slow/hub-model", chosen=True).polling)
    assert registry.page_state("slow/hub-model", chosen=True).note == "slow/hub-model could not be loaded: gave up"


def test_a_checkpoint_that_cannot_load_is_named_on_the_status_line_and_the_bundled_model_serves(make_checkpoint):
    broken, _ = make_checkpoint(tiny_params(), state_override={"norm.weight": None, "loop_scale": torch.ones(5)})
    registry = ModelRegistry(SourceConfig(hub_repo="", extra_sources=(str(broken),)))
    assert registry.start() == BUNDLED
    wait_for(lambda: not registry.page_state(BUNDLED, chosen=False).polling)
    status = registry.status(str(broken))
    assert "could not be loaded" in status and "\n" not in status
    assert "missing keys (1): norm.weight" in status and "unexpected keys (1): loop_scale [5]" in status
    assert registry.page_state(BUNDLED, chosen=False).source == BUNDLED == registry.default
    assert registry.get(BUNDLED).translate("I love pizza", max_new_tokens=8).text is not None

    refused, _ = make_checkpoint(tiny_params(mixer="gdn"))
    registry = ModelRegistry(SourceConfig(hub_repo="", extra_sources=(str(refused),)))
    registry.start()
    wait_for(lambda: not registry.page_state(BUNDLED, chosen=False).polling)
    assert "mixer='gdn' cannot run here" in registry.status(str(refused))


# --- views ---------------------------------------------------------------------------------------


class Tags(HTMLParser):
    """Start tags of an HTML fragment, and the rows inside each table body."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.body_rows = 0
        self._in_body = False
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_body |= tag == "tbody"
        self.body_rows += tag == "tr" and self._in_body

    def handle_endtag(self, tag):
        self._in_body &= tag != "tbody"


def generation(text: str = "🍕<b>", truncated: bool = False, loops_per_char=None) -> Generation:
    return Generation(
        text=text,
        token_ids=[*text.encode(), 257],
        loops_per_char=loops_per_char or [N_LOOPS] * len(text),
        n_loops=N_LOOPS,
        prompt_ids=[256, 104, 105],
        truncated=truncated,
        prefill_s=0.01,
        decode_s=0.1,
        done=True,
    )


def make_trace(chars=("🍕", "<b>"), same_as_final=(False, True, True), n_loops: int = N_LOOPS) -> Trace:
    """A Trace built by hand: one row per (loop, character), probabilities rising with the loop."""
    rows = [
        {
            "loop": loop,
            "position": position,
            "char": char,
            "p_final_char": loop / n_loops,
            "top_char": char if loop > 1 else "<script>",
            "p_top": 0.9,
            "entropy": 1.0 / loop,
            "kl_to_final": (n_loops - loop) / n_loops,
            "top5": f"{char} 0.90 · <i> 0.05",
            "loops_used": n_loops,
        }
        for loop in range(1, n_loops + 1)
        for position, char in enumerate(chars)
    ]
    by_loop = pd.DataFrame(rows, columns=BY_LOOP_COLUMNS)
    output = "".join(chars)
    answers = [output if same else "🍔" for same in same_as_final]
    per_loop = pd.DataFrame({"loops": range(1, n_loops + 1), "output": answers, "same_as_final": list(same_as_final)})
    return Trace(output, generation(output), by_loop, per_loop, summarize(by_loop, per_loop, n_loops))


def test_heatmap_escapes_characters_from_the_model():
    markup = views.heatmap_html(make_trace())
    assert not {"b", "script", "i"} & set(Tags(markup).tags)
    assert "&lt;b&gt;" in markup and "&lt;script&gt;" in markup


@pytest.mark.parametrize("n_loops", [1, 3, 8])
def test_heatmap_has_one_row_per_loop_and_one_column_per_character(n_loops):
    markup = views.heatmap_html(make_trace(chars=("🍕", "❤️", "a"), same_as_final=[True] * n_loops, n_loops=n_loops))
    tags = Tags(markup)
    assert tags.body_rows == n_loops
    assert tags.tags.count("td") == 3 * n_loops


def test_heatmap_of_an_empty_answer_says_so():
    markup = views.heatmap_html(make_trace(chars=(), same_as_final=[True] * N_LOOPS))
    assert "empty answer" in markup and "<table" not in markup


@pytest.mark.parametrize(
    "same_as_final, star_at",
    [
        ([False, True, True], 2),
        ([True, True, True], 1),
        ([True, False, True], 3),  # right at k=1 by chance, then wrong again: stable only from k=3
        ([False, False, False], None),  # sampling: no loop count gives the final answer
    ],
)
def test_per_loop_table_marks_where_the_answer_settles(same_as_final, star_at):
    table = views.per_loop_table(make_trace(same_as_final=same_as_final))
    assert list(table.columns) == ["loops", "answer", "same as final"]
    assert table["loops"].tolist() == [1, 2, 3]
    starred = table.loc[table["same as final"].str.startswith("★"), "loops"].tolist()
    assert starred == ([] if star_at is None else [star_at])
    assert [bool(mark) for mark in table["same as final"]] == list(same_as_final)  # ✓ (or ★) where it matches


def test_convergence_frame_is_long_format():
    frame = views.convergence_frame(make_trace())
    assert list(frame.columns) == ["loop", "metric", "value"]
    assert frame["metric"].nunique() == 3
    assert len(frame) == 3 * N_LOOPS and frame["value"].notna().all()
    assert sorted(frame["loop"].unique()) == list(range(1, N_LOOPS + 1))


@pytest.mark.parametrize("truncated", [False, True])
def test_summary_line_mentions_truncation_only_when_the_text_was_cut(truncated):
    line = views.summary_line(generation(truncated=truncated))
    assert f"{N_LOOPS} loops" in line and "bytes" in line
    assert ("too long" in line) == truncated


def test_summary_line_warns_of_answer_bytes_that_form_no_character():
    assert "no character" not in views.summary_line(generation())
    result = generation()
    result.token_ids = [0xF0, 0x9F, *"🍕".encode(), 0xFF, 257]
    assert "⚠️ 3 of the answer's bytes form no character" in views.summary_line(result)
    result.done = False  # a streamed snapshot: its last bytes may still be completed
    assert "no character" not in views.summary_line(result)


def test_summary_line_shows_the_seed_used_when_given():
    assert "seed" not in views.summary_line(generation())
    assert " · seed 1234 · " in views.summary_line(generation(), seed=1234)


def test_summary_line_reports_adaptive_loops():
    line = views.summary_line(generation("ab", loops_per_char=[1, 2]))
    assert "1.5 of 3 loops" in line and "adaptive" in line


def test_summary_line_reports_the_share_of_drafted_bytes_kept():
    result = generation()
    assert "drafted" not in views.summary_line(result)
    result.draft_stats = DraftStats(rounds=2, drafted=8, accepted=6)
    assert "75% of bytes drafted by the first loops kept" in views.summary_line(result)


@pytest.mark.parametrize(
    ("temperature", "adaptive", "loops", "draft_loops"),
    [(0, False, 4, 1), (0, False, 8, 2), (0, False, 1, 0), (0.7, False, 4, 0), (0, True, 4, 0)],
)
def test_only_greedy_fixed_loop_requests_are_drafted(temperature, adaptive, loops, draft_loops):
    """Drafting keeps greedy answers byte for byte; sampled ones would change for the same seed."""
    request = parse_request(fake_lm(n_loops=8), "hi", temperature, 1.0, loops, 16, 1, adaptive, 0.5)
    assert request.draft_loops == draft_loops


# --- the model panel -----------------------------------------------------------------------------


def panel_lm(**info) -> SimpleNamespace:
    """A loaded model as the panel reads it, with a hostile checkpoint's names and values in its anatomy."""
    anatomy = Anatomy(
        fields=ConfigFields(
            used={"dim": 32, "loop_residual": True},
            training={"seed": 1},
            unknown={"evil`<script>alert(1)</script>": "x` | y\nz"},
            refused={"mixer": "mixer='gdn' cannot run here"},
        ),
        families=[KeyFamily("norm.weight", 1, "[32]", "float32"), KeyFamily("a|b`<img src=x>", 2, "[3]", "bfloat16")],
        readings=[("res_gates.{i} ×3", "per-loop tensor [3, 32] <b>(loop_gates)</b>")],
        candidates=("gated", "gated_mix"),
        seconds={"download": 1.5, "convert": 0.25, "probe": 3.0},
    )
    values = {
        "source": "some/model", "folder": "", "revision": None, "weights": "consolidated.pth", "n_params": 10**6,
        "device": "cpu", "dtype": "float32", "loop_mode": "gated", "mode_source": "default", "template": "newline",
        "template_source": "probe", "anatomy": anatomy,
        "probe_note": "loop mode probe (under 'tab'): no clear winner 'gated_mix', margin 0.004 nats/byte",
    } | info  # fmt: skip
    args = SimpleNamespace(n_layers=2, n_loops=3, dim=32, n_heads=4)
    return SimpleNamespace(info=ModelInfo(**values), model=SimpleNamespace(args=args))


def test_the_model_panel_shows_the_anatomy_and_why_a_default_stays():
    text = views.model_info_markdown(panel_lm())
    assert (
        "- loop mode `gated`: the documented default, among the readings the checkpoint leaves open (gated, gated_mix)"
        in text
    )
    assert "- loop mode probe (under 'tab'): no clear winner 'gated_mix', margin 0.004 nats/byte" in text
    assert "where the probe found no clear winner, the documented default stays" in text
    assert "- used: `dim` = `32`, `loop_residual` = `True`" in text and "- ignored, training only: `seed` = `1`" in text
    assert "- refused: `mixer`: mixer='gdn' cannot run here" in text
    assert "Load time: download 1.50 s · convert 0.25 s · probe 3.00 s (consolidated.pth)" in text
    assert "- `res_gates.{i} ×3`: per-loop tensor [3, 32] &lt;b&gt;(loop_gates)&lt;/b&gt;" in text


def test_the_model_panel_lets_no_markup_from_a_checkpoint_through():
    text = views.model_info_markdown(panel_lm())
    assert "<b>" not in text  # prose is escaped; in code spans markup is shown as text, never run
    for line in text.splitlines():
        if line.startswith("- ignored, not known here"):
            assert line.count("`") == 4 and "\n" not in line  # two code spans: no backtick or newline breaks out
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [len(row.replace("\\|", "").split("|")) for row in rows] == [6, 6]  # four cells each: no | breaks out


def test_the_model_panel_says_when_the_probe_did_not_run():
    text = views.model_info_markdown(panel_lm(probe_note="", template_source="default"))
    assert "the probe did not run" in text and "no clear winner" not in text
