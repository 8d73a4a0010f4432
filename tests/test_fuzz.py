"""Fuzzing what strangers can send: any text and any slider values, through the library and the Space's API.

Every call must either give a well-formed result or raise ValueError naming what is wrong.
Anything else (another exception, a hang, a flood of text in the message) fails.
The byte decoder's fuzz lives beside it: tests/test_tokenizer.py and tests/test_generation.py.
"""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emojilm.generation import Generation
from emojilm.request import LOOPS_FACTOR, MAX_NEW_TOKENS, MAX_TEXT_CHARS, MIN_PROMPT, THRESHOLD
from emojilm.space import SpaceBackend, parse_request
from emojilm.trace import Trace, _show
from tests.tiny_lms import ODD_TEXTS, TRAINED_LOOPS, tiny_lm

# A tiny model whose answers end (eos_bias) keeps each example to milliseconds; the bounds below
# are generous hang guards, not speed targets.
FUZZ = settings(
    max_examples=60, deadline=timedelta(seconds=30), suppress_health_check=[HealthCheck.too_slow]
)  # fmt: skip

# --- what a stranger can send ----------------------------------------------------------------------

SPECIAL = [
    "\x00", "\x1b[2J", "\r\n", "\ud800", "\udfff", "\ufeff", "\ufffd", "\u202e", "\u200f", "\u200d", "\u0301",
    "مرحبا", "שלום", "👩\u200d👩\u200d👧", "🏳️\u200d🌈", "🇫🇷", "❤️", "🍕", "👍🏽", "日本語", "\U0010ffff",
]  # fmt: skip
any_char = st.characters(blacklist_categories=())  # lone surrogates and control characters included
texts = st.one_of(
    st.lists(st.one_of(st.text(any_char, max_size=12), st.sampled_from(SPECIAL)), max_size=8).map("".join),
    st.sampled_from(ODD_TEXTS),
    # 20,000 characters: the Space's limit (and one past it), by repeating a random piece.
    st.builds(
        lambda piece, n: (piece * n)[:n],
        st.text(any_char, min_size=1, max_size=6),
        st.sampled_from([MAX_TEXT_CHARS, MAX_TEXT_CHARS + 1]),
    ),
)
# What a raw API client or a broken page can send for a slider.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31, 2**63, 2**64, -(2**63) - 1, 10**400]),  # past 32/64 bits, past a float
    st.floats(),  # NaN and ±inf included
    st.sampled_from(["", "nan", "inf", "-1", "1e400", " 3 ", "0x10", "abc"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


def at_and_around(low, high, inside):
    """Values at the bounds, just past them, inside, and junk."""
    return st.one_of(st.sampled_from([low, high]), inside, junk)


def short(message: str) -> bool:
    """A message fit for the page: not empty, and not flooded by a huge value echoed back."""
    return 0 < len(message) <= 300


# --- the library -----------------------------------------------------------------------------------

LM = tiny_lm("add", eos_bias=1.0)
MAX_LOOPS = LM.max_loops
CONTEXT = LM.model.args.max_seqlen

LIBRARY_ARGS = {
    "temperature": at_and_around(0.0, 2.0, st.floats(-0.5, 2.5)),
    "top_p": at_and_around(0.0, 1.0, st.floats(-0.5, 1.5)),
    "top_k": at_and_around(0, 258, st.integers(-2, 300)),
    "seed": at_and_around(-(2**63), 2**64 - 1, st.integers(-10, 10**20)),
    "n_loops": at_and_around(1, MAX_LOOPS, st.integers(0, MAX_LOOPS + 2)),
    "max_new_tokens": at_and_around(1, CONTEXT - MIN_PROMPT, st.integers(-1, 8)),
    "adaptive_threshold": at_and_around(0.0, THRESHOLD[1], st.floats(-1.0, 12.0)),
}


def is_number(value, low, high, low_open=False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
        return False
    return (low < value if low_open else low <= value) and value <= high


def is_int(value, low, high) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# What the library accepts (docs/reliability.md, "Bad inputs": anything else is a ValueError naming it).
VALID = {
    "temperature": lambda v: is_number(v, 0.0, 2.0),
    "top_p": lambda v: is_number(v, 0.0, 1.0, low_open=True),
    "top_k": lambda v: is_int(v, 0, 258),
    "seed": lambda v: v is None or is_int(v, -(2**63), 2**64 - 1),
    "n_loops": lambda v: v is None or is_int(v, 1, MAX_LOOPS),
    "max_new_tokens": lambda v: is_int(v, 1, CONTEXT - MIN_PROMPT),
    "adaptive_threshold": lambda v: is_number(v, 0.0, THRESHOLD[1]),
}


def check_generation(result: Generation, kwargs) -> None:
    assert result.done and isinstance(result.text, str)
    assert result.text == LM.tokenizer.decode(result.token_ids)
    assert len(result.token_ids) <= kwargs["max_new_tokens"]
    assert len(result.prompt_ids) + len(result.token_ids) <= CONTEXT
    assert result.n_loops == (kwargs.get("n_loops") or TRAINED_LOOPS)


@pytest.mark.parametrize("call", ["translate", "trace"])
@FUZZ
@given(text=st.one_of(texts, junk), data=st.data())
def test_library_gives_a_result_or_a_value_error_naming_the_problem(call, text, data):
    kwargs = {"max_new_tokens": 6}
    for name in data.draw(st.sets(st.sampled_from(sorted(LIBRARY_ARGS)), max_size=3), label="changed"):
        kwargs[name] = data.draw(LIBRARY_ARGS[name], label=name)
    bad = [name for name, value in kwargs.items() if not VALID[name](value)] + ["text"] * (not isinstance(text, str))
    if call == "trace" and VALID["max_new_tokens"](kwargs["max_new_tokens"]):
        kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], 12)  # a long trace is slow, not more varied

    try:
        result = getattr(LM, call)(text, **kwargs)
    except ValueError as err:
        assert bad, f"valid arguments refused: {err}"
        assert any(name in str(err) for name in bad), f"names none of {bad}: {str(err)[:500]}"
        return
    assert not bad, f"accepted bad arguments {bad}"
    if call == "trace":
        assert isinstance(result, Trace) and result.output == result.generation.text
        assert len(result.per_loop_outputs) == result.generation.n_loops
        result = result.generation
    check_generation(result, kwargs)


# --- the Space: parse_request and the two API endpoints ---------------------------------------------

API_ARGS = {
    "temperature": at_and_around(0.0, 2.0, st.floats(-0.5, 2.5)),
    "top_p": at_and_around(0.01, 1.0, st.floats(-0.5, 1.5)),
    "loops": at_and_around(1, LOOPS_FACTOR * TRAINED_LOOPS, st.integers(0, 10)),
    "max_new_tokens": at_and_around(1, MAX_NEW_TOKENS, st.integers(1, 8)),
    "seed": at_and_around(0, 2**31 - 1, st.integers(-2, 10**10)),
}


def draw_api_args(data) -> dict:
    args = {}
    for name in data.draw(st.sets(st.sampled_from(sorted(API_ARGS)), max_size=3), label="changed"):
        args[name] = data.draw(API_ARGS[name], label=name)
    return args


@FUZZ
@given(text=st.one_of(texts, junk), adaptive=junk, threshold=junk, data=st.data())
def test_parse_request_gives_a_checked_request_or_a_value_error_naming_the_value(text, adaptive, threshold, data):
    args = draw_api_args(data)
    try:
        request = parse_request(LM, text, adaptive=adaptive, threshold=threshold, **args)
    except ValueError as err:
        assert short(str(err)), f"unclear message: {str(err)[:500]}"
        named = [name for name in (*args, "threshold") if name in str(err)]
        assert named or not isinstance(text, str) or "text" in str(err).lower(), f"names no argument: {err}"
        return
    # What comes out is always within the page's limits, with the library's types.
    assert isinstance(request.text, str) and request.text.strip() and len(request.text) <= MAX_TEXT_CHARS
    assert 0.0 <= request.temperature <= 2.0 and 0.0 < request.top_p <= 1.0
    assert is_int(request.n_loops, 1, LOOPS_FACTOR * TRAINED_LOOPS)
    assert is_int(request.max_new_tokens, 1, min(MAX_NEW_TOKENS, CONTEXT - MIN_PROMPT))
    assert is_int(request.seed, 0, 2**31 - 1)
    assert 0.0 <= request.adaptive_threshold <= THRESHOLD[1]


@pytest.mark.parametrize("endpoint", ["api_translate", "api_trace"])
@FUZZ
@given(text=st.one_of(texts, junk), data=st.data())
def test_api_endpoints_answer_or_raise_a_value_error(endpoint, text, data):
    """Whatever passes parse_request, the library accepts: no other error reaches the page."""
    backend = SpaceBackend(SimpleNamespace(default="test", get=lambda *_: LM))
    args = draw_api_args(data)
    try:
        answer, *tables = getattr(backend, endpoint)(text, **args)
    except ValueError as err:
        assert short(str(err)), f"unclear message: {str(err)[:500]}"
        return
    assert isinstance(answer, str)
    assert len(tables) == (1 if endpoint == "api_translate" else 3)


# --- what the fuzz found (kept as plain regressions) ------------------------------------------------


FOUND = [("temperature", 10**400), ("loops", 10**400), ("seed", 10**400), ("top_p", True), ("loops", True),
         ("max_new_tokens", "9" * 20_000)]  # fmt: skip


@pytest.mark.parametrize("name, value", FOUND, ids=[f"{n}={str(v)[:8]}" for n, v in FOUND])
def test_parse_request_refuses_huge_ints_and_booleans_in_a_short_message(name, value):
    with pytest.raises(ValueError, match=name) as err:
        parse_request(LM, "hi", **{name: value})
    assert short(str(err.value))


@pytest.mark.parametrize("name, value", [("temperature", 10**400), ("top_p", 10**400), ("seed", 2**64)],
                         ids=["temperature", "top_p", "seed"])  # fmt: skip
def test_library_refuses_numbers_past_a_float_or_a_torch_seed_before_streaming(name, value):
    with pytest.raises(ValueError, match=name):
        LM.stream("hi", **{"temperature": 1.0, name: value})  # refused on the call, not at the first item


@pytest.mark.parametrize("ids, shown", [([0xF0, 257], "\ufffd"), ([0xC3, 256, 0xA9], "\ufffd"), ([257], "⏹")])
def test_trace_shows_a_branch_that_hits_a_special_id_mid_character(ids, shown):
    # Seen on the bundled model ("J'adore le chocolat 375441", temperature 0.8, seed 938204377):
    # a loop's top branch completed with EOS, and the whole trace failed.
    assert _show(ids) == shown
