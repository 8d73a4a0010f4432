"""Links to an answer, without a browser: building one from a request, reading one back, and bad links.

Links are read the way the page gets them: a query string parsed by Starlette's QueryParams
(what gr.Request.query_params is), every value a string.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from emojilm import links
from emojilm.links import MAX_LINK_CHARS, LinkedPage, build_link, read_link
from emojilm.request import MAX_NEW_TOKENS, MAX_TEXT_CHARS
from emojilm.space import parse_request

# Two allowed sources with different trained loop counts: loops are checked against the link's model.
HUB, BUNDLED, LOADING = "me/emoji-model", "bundled", "me/slow-model"
SOURCES = [HUB, BUNDLED, LOADING]
LMS = {
    HUB: SimpleNamespace(n_loops=8, model=SimpleNamespace(args=SimpleNamespace(max_seqlen=512))),
    BUNDLED: SimpleNamespace(n_loops=4, model=SimpleNamespace(args=SimpleNamespace(max_seqlen=512))),
}


def model(source: str, loop_mode: str | None = None, template: str | None = None):
    """Like ModelRegistry.get: ValueError for a source outside the list, one still loading, a bad variant."""
    if source not in SOURCES:
        raise ValueError(f"model must be one of {SOURCES}, got {source!r}")
    if source == LOADING:
        raise ValueError(f"{source} is still loading (3 s so far)…")
    if loop_mode == "gated":
        raise ValueError("loop mode 'gated' needs gate weights, and this checkpoint has none")
    return LMS[source]


def read(query: str, shown: str = BUNDLED) -> LinkedPage | None:
    return read_link(QueryParams(query.removeprefix("?")), SOURCES, model, shown)


def request_of(page: LinkedPage):
    """The request the page makes from what the link set (the controls' defaults for the rest)."""
    return parse_request(
        LMS[page.source], page.text, page.temperature, page.top_p, page.loops, page.max_new, page.seed,
        page.adaptive, page.threshold,
    )  # fmt: skip


# --- round trip: a request -> its link -> the same request ---------------------------------------

ROUND_TRIPS = {
    "greedy-defaults": (BUNDLED, None, None, ("I love pizza",)),
    "sampled": (BUNDLED, None, None, ("a cup of coffee", 0.8, 0.9, 3, 64, 7)),
    "random-seed-drawn": (BUNDLED, None, None, ("a cup of coffee", 1.3, 0.5, 2, 32, -1)),
    "adaptive": (BUNDLED, None, None, ("we won!", 0.0, 1.0, 8, 16, 5, True, 0.07)),
    "float-noise": (BUNDLED, None, None, ("hi", 0.15000000000000002, 0.7000000000000001, 1, 1, 0)),
    "limits": (BUNDLED, None, None, ("x", 2.0, 0.01, 8, MAX_NEW_TOKENS, 2**31 - 1)),
    "odd-text": (BUNDLED, None, None, ("a+b=c & d%20 #e?f\n😀 ‮ 👩‍👩‍👧 \x00", 0.5, 1.0, 4, 64, 1)),
    "other-model": (HUB, None, None, ("Ich liebe Hunde", 0.7, 0.95, 16, 100, 42)),
    "advanced": (HUB, "add_skip_first", "arrow", ("J'adore le chocolat", 0.0, 1.0, 3, 64, 9)),
}


@pytest.mark.parametrize("source, loop_mode, template, args", ROUND_TRIPS.values(), ids=ROUND_TRIPS)
def test_a_link_gives_back_the_request_it_was_built_from(source, loop_mode, template, args):
    request = parse_request(LMS[source], *args)
    query = build_link(request, source, loop_mode, template)
    assert query.startswith("?") and " " not in query and "\n" not in query

    page = read(query)
    assert page.ignored == () and page.note == ""
    assert (page.source, page.model_from_link, page.loop_mode, page.template) == (source, True, loop_mode, template)
    assert request_of(page) == request  # the drawn seed included


def test_the_link_carries_the_drawn_seed():
    request = parse_request(LMS[BUNDLED], "hi", 1.0, seed=-1)
    assert f"seed={request.seed}&" in build_link(request, BUNDLED)


def test_the_example_link_asks_what_the_api_is_asked():
    """/?text=a+cup+of+coffee&temperature=0.8&top_p=0.9&loops=3&seed=7 is /translate's
    ("a cup of coffee", 0.8, 0.9, 3, 64, 7) on the page's model."""
    page = read("?text=a+cup+of+coffee&temperature=0.8&top_p=0.9&loops=3&seed=7")
    assert (page.text, page.temperature, page.top_p, page.loops, page.seed) == ("a cup of coffee", 0.8, 0.9, 3, 7)
    assert (page.max_new, page.adaptive, page.threshold, page.ignored) == (None, None, None, ())
    assert (page.source, page.model_from_link) == (BUNDLED, False)
    assert request_of(page) == parse_request(LMS[BUNDLED], "a cup of coffee", 0.8, 0.9, 3, 64, 7)


def test_a_plain_visit_is_no_link():
    assert read("") is None
    assert read("?__theme=dark&view=api&utm_source=x") is None  # Gradio's and others' keys are not ours
    assert read("?text=&seed=") is None  # empty values count as absent


def test_a_link_without_text_sets_the_controls_and_answers_nothing():
    page = read("?temperature=1.5&text=%20%20")
    assert page.text is None and page.temperature == 1.5 and page.ignored == ()


@pytest.mark.parametrize("value, expected", [("1", True), ("TRUE", True), ("on", True), ("no", False), ("0", False)])
def test_adaptive_reads_the_usual_spellings(value, expected):
    assert read(f"?adaptive={value}").adaptive is expected


@pytest.mark.parametrize("value", ["-1", "-1.0"])
def test_a_random_seed_stays_random(value):
    page = read(f"?text=hi&seed={value}")
    assert page.seed == -1 and page.ignored == ()
    assert len({request_of(page).seed for _ in range(20)}) > 1


def test_a_link_is_not_built_for_a_text_too_long_to_fit_in_one():
    fits = parse_request(LMS[BUNDLED], "x" * 7_000, seed=1)
    assert len(build_link(fits, BUNDLED)) <= MAX_LINK_CHARS
    assert build_link(parse_request(LMS[BUNDLED], "😀" * 1_000, seed=1), BUNDLED) is None  # 12 encoded bytes each


# --- bad links: the good values applied, each bad one left at its default, named on one line -------

BAD = [
    ("temperature", "banana", "temperature must be a number from 0.0 to 2.0, got 'banana'"),
    ("temperature", "nan", "temperature"),
    ("temperature", "inf", "temperature"),
    ("temperature", "2.5", "temperature"),
    ("top_p", "0", "top_p"),
    ("loops", "-3", "loops must be a number from 1 to 8, got '-3'"),
    ("loops", "2.5", "loops must be a whole number"),
    ("loops", "9", "loops"),  # the bundled model's cap is 2 x 4
    ("loops", "1e400", "loops"),
    ("max_new", "0", "max_new_tokens"),
    ("max_new", str(MAX_NEW_TOKENS + 1), "max_new_tokens"),
    ("seed", "-5", "seed"),
    ("seed", "0x10", "seed"),
    ("seed", str(2**31), "seed"),
    ("threshold", "2", "threshold"),
    ("adaptive", "maybe", "adaptive must be true or false, got 'maybe'"),
    ("model", "nope", f"model must be one of {SOURCES}, got 'nope'"),
    ("model", "/etc", "model must be one of"),
    ("model", LOADING, f"{LOADING} is still loading"),
    ("loop_mode", "sideways", "loop_mode must be one of"),
    ("loop_mode", "gated", "loop_mode: loop mode 'gated' needs gate weights"),
    ("template", "{text} -> ", "template must be one of"),
]


@pytest.mark.parametrize("key, value, reason", BAD, ids=[f"{k}={v[:10]}" for k, v, _ in BAD])
def test_a_bad_value_is_left_out_and_the_rest_applied(key, value, reason):
    good = {"text": "I love pizza", "top_p": "0.9", "max_new": "32"}
    page = read(f"?{QueryParams(good | {key: value})}")
    assert page.text == "I love pizza"
    assert [page.top_p, page.max_new] == [None if key == "top_p" else 0.9, None if key == "max_new" else 32]
    assert len(page.ignored) == 1 and reason in page.ignored[0]
    assert reason in page.note and "\n" not in page.note
    field = {"model": "source", "loop_mode": "loop_mode", "template": "template"}.get(key, key)
    assert getattr(page, field) == (BUNDLED if key == "model" else None)  # left at its default
    assert not page.model_from_link
    request = request_of(page)
    assert request == parse_request(  # the good values applied, the rest at their defaults
        LMS[BUNDLED], "I love pizza", top_p=page.top_p, max_new_tokens=page.max_new, seed=request.seed
    )


def test_the_example_bad_link_names_every_bad_value_on_one_line():
    page = read("?text=I+love+pizza&temperature=banana&loops=-3&model=nope&top_p=0.9&seed=3")
    assert (page.text, page.top_p, page.seed, page.source) == ("I love pizza", 0.9, 3, BUNDLED)
    assert page.temperature is None and page.loops is None
    assert len(page.ignored) == 3 and "\n" not in page.note
    assert all(name in page.note for name in ("temperature", "loops", "model"))


def test_a_text_over_the_limit_is_cut_to_it():
    page = read(f"?{QueryParams({'text': 'ab' * MAX_TEXT_CHARS, 'seed': '4'})}")
    assert page.text == "ab" * (MAX_TEXT_CHARS // 2) and page.seed == 4
    assert page.ignored == (f"text past its first {MAX_TEXT_CHARS:,} characters (the limit)",)
    assert request_of(page).text == page.text  # the API takes it as it is


def test_loops_are_checked_against_the_links_model():
    assert read(f"?model={HUB}&loops=12").loops == 12  # trained with 8: up to 16
    assert read("?model=bundled&loops=12").loops is None
    assert read(f"?model={LOADING}&loops=12").loops is None  # not ready: checked against the page's model


def test_a_huge_value_cannot_flood_the_note():
    page = read(f"?{QueryParams({'temperature': '9' * 50_000, 'model': 'm' * 50_000, 'adaptive': 'y' * 50_000})}")
    assert len(page.ignored) == 3 and len(page.note) < 600


def test_the_pages_model_not_ready_is_a_value_error_for_the_app_to_show():
    with pytest.raises(ValueError, match="still loading"):
        read("?text=hi", shown=LOADING)
    assert read(f"?text=hi&model={HUB}", shown=LOADING).source == HUB  # unless the link names a ready one


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([*links.KEYS, "other"]), st.text(max_size=30), max_size=len(links.KEYS)))
def test_any_link_opens_the_page_with_values_the_api_takes(query):
    page = read_link(query, SOURCES, model, BUNDLED)
    if page is None:
        return
    assert "\n" not in page.note
    if page.text is not None:
        request = request_of(page)  # never a ValueError: every value kept passes the API's rules
        assert request.text == page.text
