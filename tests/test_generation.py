"""Decoding, sampling, streaming and adaptive loops, checked against computations written here."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emojilm.config import LOOP_MODES
from emojilm.generation import decode_steps, until_eos
from emojilm.prompt import clean_text
from emojilm.request import LOOPS_FACTOR, THRESHOLD
from emojilm.sampling import SamplingParams, filtered_probs
from emojilm.tokenizer import EOS_ID, StreamDecoder
from tests.tiny_lms import ARCHITECTURES, ODD_TEXTS, TRAINED_LOOPS, naive_greedy, scripted_lm, tiny_lm

TEXTS = ["I love pizza", "héllo wörld ☕", "🍕🍕"]
SAMPLED = {"temperature": 1.0, "seed": 7}


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("add")


def sampled_ids(lm, text: str, **kwargs) -> list[int]:
    return lm.translate(text, max_new_tokens=32, **kwargs).token_ids


# --- greedy decoding against full recompute -------------------------------------------------------


@pytest.mark.parametrize("loop_mode", LOOP_MODES)
@pytest.mark.parametrize("n_loops", [1, TRAINED_LOOPS, TRAINED_LOOPS + 2])
def test_greedy_generate_matches_naive_decode(loop_mode, n_loops):
    lm = tiny_lm(loop_mode, eos_bias=1.0)
    for text in TEXTS[:2]:
        prompt = lm.prompt_ids(text)
        expected = naive_greedy(lm, prompt, n_loops, max_new_tokens=16)
        assert lm.generate(prompt, n_loops=n_loops, max_new_tokens=16) == expected
        assert lm.translate(text, n_loops=n_loops, max_new_tokens=16).token_ids == expected


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_greedy_generate_matches_naive_decode_with_gated_or_windowed_attention(architecture):
    lm = tiny_lm("gated_mix", eos_bias=1.0, **ARCHITECTURES[architecture])
    for text in TEXTS[:2]:
        prompt = lm.prompt_ids(text)
        window = lm.model.args.sliding_window
        assert window is None or len(prompt) > window  # the window cuts the prompt off
        expected = naive_greedy(lm, prompt, TRAINED_LOOPS + 1, max_new_tokens=16)
        assert lm.translate(text, n_loops=TRAINED_LOOPS + 1, max_new_tokens=16).token_ids == expected


def test_greedy_at_max_loops_matches_naive_decode(lm):
    prompt = lm.prompt_ids("pizza")
    assert lm.generate(prompt, n_loops=lm.max_loops, max_new_tokens=8) == naive_greedy(lm, prompt, lm.max_loops, 8)


def test_generate_stops_after_eos():
    lm = scripted_lm("🍕".encode())
    assert lm.generate(lm.prompt_ids("x"), max_new_tokens=20) == [*"🍕".encode(), EOS_ID]
    assert lm.translate("x").text == "🍕"


@pytest.mark.parametrize("sampling", [{}, SAMPLED], ids=["greedy", "sampled"])
def test_rows_that_stop_leave_the_other_rows_unchanged(lm, sampling):
    """With a stop id, a row that has yielded it stops running its loops; the other rows decode as before."""
    prompts, exits, params = torch.tensor([lm.prompt_ids("pizza")]), [TRAINED_LOOPS, 2, 1], SamplingParams(**sampling)
    free = torch.stack(list(decode_steps(lm.model, prompts, exits, params, 12)), dim=1).tolist()  # [rows, steps]
    stop = free[1][3]  # a byte the rows yield at different steps (or never)
    stopped = until_eos(decode_steps(lm.model, prompts, exits, params, 12, stop_id=stop), stop)
    assert stopped == [row[: row.index(stop) + 1] if stop in row else row for row in free]
    assert len({len(row) for row in stopped}) > 1  # some row went on after another stopped


def test_default_loop_count_is_the_trained_one(lm):
    prompt = lm.prompt_ids("pizza")
    assert lm.generate(prompt, max_new_tokens=16) == lm.generate(prompt, n_loops=TRAINED_LOOPS, max_new_tokens=16)


# --- sampling ---------------------------------------------------------------------------------------


def test_seeded_sampling_is_reproducible_and_seeds_matter(lm):
    runs = {seed: sampled_ids(lm, "I love pizza", temperature=1.0, seed=seed) for seed in range(4)}
    for seed, ids in runs.items():
        assert sampled_ids(lm, "I love pizza", temperature=1.0, seed=seed) == ids
    prompt = lm.prompt_ids("I love pizza")
    assert lm.generate(prompt, temperature=1.0, seed=3, max_new_tokens=32) == runs[3]
    assert len({tuple(ids) for ids in runs.values()}) > 1


def test_a_seeded_request_ignores_global_rng_and_other_requests(lm):
    torch.manual_seed(1)
    random.seed(1)
    alone = sampled_ids(lm, "I love pizza", **SAMPLED)
    torch.manual_seed(2)
    random.seed(2)
    sampled_ids(lm, "something else", temperature=1.0)  # unseeded request in between
    assert sampled_ids(lm, "I love pizza", **SAMPLED) == alone

    # Two requests streamed turn about, as concurrent users would be served.
    other = sampled_ids(lm, "coffee", temperature=1.3, seed=8)
    streams = {
        "mine": lm.stream("I love pizza", max_new_tokens=32, **SAMPLED),
        "theirs": lm.stream("coffee", max_new_tokens=32, temperature=1.3, seed=8),
    }
    finals = {}
    while streams:
        for name, items in list(streams.items()):
            if (item := next(items, None)) is None:
                del streams[name]
            else:
                finals[name] = item
    assert (finals["mine"].token_ids, finals["theirs"].token_ids) == (alone, other)


def test_unseeded_requests_leave_global_rng_untouched(lm):
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    lm.translate("pizza", temperature=1.0, max_new_tokens=8)
    lm.generate(lm.prompt_ids("pizza"), temperature=1.0, max_new_tokens=8)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("narrow", [{"top_k": 1}, {"top_p": 1e-6}, {"top_k": 1, "top_p": 0.5}])
def test_narrow_sampling_equals_greedy(lm, narrow):
    for text, seed in itertools.product(TEXTS[:2], range(2)):
        greedy = sampled_ids(lm, text)
        assert sampled_ids(lm, text, temperature=1.5, seed=seed, **narrow) == greedy


def test_samples_only_tokens_that_survive_top_k(lm):
    prompt = lm.prompt_ids("I love pizza")
    with torch.no_grad():
        top3 = set(lm.model(torch.tensor([prompt]))[0, -1].topk(3).indices.tolist())
    firsts = {lm.generate(prompt, temperature=2.0, top_k=3, seed=s, max_new_tokens=1)[0] for s in range(30)}
    assert firsts <= top3 and len(firsts) > 1


PROBS = [0.05, 0.4, 0.1, 0.25, 0.2]


def hand_filtered(probs: list[float], temperature: float, top_k: int, top_p: float) -> list[float]:
    """Temperature, then keep the top_k largest, then the smallest prefix (by size) whose mass reaches top_p."""
    weights = [p ** (1 / temperature) for p in probs]
    order = sorted(range(len(probs)), key=lambda i: -weights[i])
    keep = order[:top_k] if top_k else order
    total = sum(weights[i] for i in keep)
    nucleus, mass = [], 0.0
    for i in keep:
        nucleus.append(i)
        mass += weights[i] / total
        if mass >= top_p:
            break
    total = sum(weights[i] for i in nucleus)
    return [weights[i] / total if i in nucleus else 0.0 for i in range(len(probs))]


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p", "kept"),
    [
        (1.0, 0, 1.0, 5),
        (0.5, 0, 1.0, 5),
        (2.0, 0, 1.0, 5),
        (1.0, 2, 1.0, 2),
        (1.0, 0, 0.6, 2),  # 0.4 + 0.25 reaches 0.6
        (1.0, 0, 0.3, 1),
        (1.0, 0, 0.9, 4),
        (1.0, 3, 0.7, 2),  # top-p on the top-3 renormalized: 0.47 + 0.29 reaches 0.7
        (2.0, 0, 0.5, 2),
        (0.5, 4, 0.95, 3),
    ],
)
def test_filtered_probs_matches_hand_computation(temperature, top_k, top_p, kept):
    logits = torch.tensor([PROBS, PROBS[::-1]]).log() + 3.0  # a shift must not matter
    got = filtered_probs(logits, SamplingParams(temperature, top_p, top_k))
    expected = torch.tensor([hand_filtered(PROBS, temperature, top_k, top_p)])
    expected = torch.cat([expected, expected.flip(-1)])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert (got[0] > 0).sum() == kept


def test_top_p_keeps_the_smallest_prefix_reaching_it():
    # Four equal bytes: two of them reach 0.5 exactly, so the third must go.
    probs = filtered_probs(torch.zeros(1, 4), SamplingParams(1.0, top_p=0.5))
    assert sorted(probs[0].tolist()) == [0.0, 0.0, 0.5, 0.5]


# --- argument checking -----------------------------------------------------------------------------

BAD_ARGS = [
    *[("temperature", v) for v in (-1, 3, math.nan, math.inf, "a")],
    *[("top_p", v) for v in (0, 1.5, math.nan)],
    *[("top_k", v) for v in (-1, 1.5, 1000)],
    *[("n_loops", v) for v in (0, LOOPS_FACTOR * TRAINED_LOOPS + 1, True, 2.0)],
    *[("max_new_tokens", v) for v in (0, 10**9, -3)],
    ("seed", "x"),
    ("seed", 1.5),
]


@pytest.mark.parametrize(("name", "value"), BAD_ARGS)
@pytest.mark.parametrize("call", ["translate", "stream", "generate", "trace"])
def test_bad_arguments_raise_value_error_naming_them(lm, call, name, value):
    with pytest.raises(ValueError, match=name):
        if call == "generate":
            lm.generate(lm.prompt_ids("pizza"), **{name: value})
        else:
            getattr(lm, call)("pizza", **{name: value})  # stream must refuse before the first item


@pytest.mark.parametrize("call", ["translate", "stream", "trace"])
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"temprature": 1.0}, "temprature"),
        ({"adaptive_threshold": -1.0}, "adaptive_threshold"),
        ({"adaptive_threshold": math.nan}, "adaptive_threshold"),
        ({"adaptive_threshold": 1e9}, "adaptive_threshold"),
        ({"adaptive_threshold": "a"}, "adaptive_threshold"),
    ],
)
def test_bad_options_raise_value_error_naming_them(lm, call, kwargs, name):
    with pytest.raises(ValueError, match=name):
        getattr(lm, call)("pizza", **kwargs)


@pytest.mark.parametrize("call", ["translate", "stream", "trace"])
def test_text_must_be_a_string(lm, call):
    with pytest.raises(ValueError, match="text"):
        getattr(lm, call)(b"pizza")


@pytest.mark.parametrize("prompt", [[], [258], [-1], "pizza"])
def test_bad_prompt_ids_raise_value_error(lm, prompt):
    with pytest.raises(ValueError, match="prompt_ids"):
        lm.generate(prompt)


# --- streaming -------------------------------------------------------------------------------------


def check_stream(lm, text: str, **kwargs) -> list:
    items = list(lm.stream(text, **kwargs))
    final = items[-1]
    assert final.done and not any(item.done for item in items[:-1])
    assert final.text == lm.tokenizer.decode(final.token_ids)
    assert final.token_ids == lm.translate(text, **kwargs).token_ids
    assert len(final.loops_per_char) == len(final.text)
    for before, item in itertools.pairwise(items[:-1]):
        assert len(before.text) < len(item.text) and len(before.token_ids) < len(item.token_ids)
    for item in items:
        assert final.text.startswith(item.text)
        data = bytes(item.token_ids[: len(item.token_ids) - (item.token_ids[-1:] == [EOS_ID])])
        # All that was released: the bytes decoded, less at most an unfinished character (held back).
        assert any(item.text == data[: len(data) - held].decode("utf-8", "replace") for held in range(4))
    return items


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("loop_mode", ["add", "none"])
def test_stream_releases_prefixes_of_the_final_text(loop_mode, seed):
    lm = tiny_lm(loop_mode, eos_bias=1.0, head_scale=2.0)
    check_stream(lm, "I love pizza", temperature=1.0, seed=seed, max_new_tokens=32)


@pytest.mark.parametrize("answer", ["❤️🍕", "héło ☕", "⚽️!", ""])
def test_stream_releases_whole_characters_only(answer):
    lm = scripted_lm(answer.encode())
    items = check_stream(lm, "x")
    assert [item.text for item in items] == [answer[:n] for n in range(1, len(answer) + 1)] + [answer]
    assert not any("\ufffd" in item.text for item in items)


# Well-formed UTF-8 sequences of two or more bytes (Unicode Table 3-7).
MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
CHUNKS = st.one_of(
    st.binary(max_size=4),
    st.text(max_size=3).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.text(max_size=3).map(lambda s: s.encode("utf-8", "surrogatepass")[:-1]),  # cut characters
)


@settings(max_examples=300, deadline=None)
@given(st.lists(CHUNKS, max_size=12).map(b"".join))
def test_stream_decoder_matches_whole_decode_and_never_splits_a_character(data):
    decoder, released = StreamDecoder(), [""]  # released[n]: all the text out after n bytes
    for byte in data:
        released.append(released[-1] + decoder.push(byte))
    assert decoder.push(EOS_ID) == ""
    whole = data.decode("utf-8", "replace")
    assert released[-1] + decoder.flush() == whole
    # Half a character would show as U+FFFD where the whole decode has the character.
    assert all(whole.startswith(text) for text in released)
    for match in MULTIBYTE.finditer(data):  # a complete character comes out with its last byte
        assert released[match.end()] == data[: match.end()].decode("utf-8", "replace")


# --- odd and long inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_odd_inputs_translate(lm, text):
    result = lm.translate(text, max_new_tokens=16)
    assert isinstance(result.text, str) and result.done and not result.truncated
    assert lm.tokenizer.decode(result.prompt_ids) == clean_text(text.replace("\ud800", "\ufffd")) + "\n"


LONG_TEXTS = {
    "words": ("I love pizza " * 2000)[:20_000],
    "emoji": ("🍕❤️ " * 7000)[:20_000],
    "spaced": ("pizza" + " " * 15) * 1000,  # cleaning shrinks it a lot
    "surrogates": "\ud83c" * 20_000,  # three bytes each once encoded
}


@pytest.mark.parametrize("name", LONG_TEXTS)
def test_long_input_is_cut_to_fit_the_context(lm, name, monkeypatch):
    text = LONG_TEXTS[name]
    assert len(text) == 20_000
    max_seqlen = lm.model.args.max_seqlen
    prompts_built = []
    monkeypatch.setattr(lm, "prompt_ids", lambda t, build=lm.prompt_ids: prompts_built.append(t) or build(t))
    for max_new_tokens in (1, max_seqlen - 16):
        prompts_built.clear()
        result = lm.translate(text, max_new_tokens=max_new_tokens)
        assert len(prompts_built) < 50  # finding the cut must not try prefixes one by one
        assert result.truncated
        assert len(result.prompt_ids) + len(result.token_ids) <= max_seqlen
        # As much text as fits is kept (at most one character less), and it is the start of the text.
        assert len(result.prompt_ids) + max_new_tokens >= max_seqlen - 4
        kept = lm.tokenizer.decode(result.prompt_ids).removesuffix("\n")
        assert clean_text(text.replace("\ud83c", "\ufffd")).startswith(kept)


# --- adaptive loops --------------------------------------------------------------------------------


@pytest.mark.parametrize("loop_mode", ["add", "inject_embeddings"])
@pytest.mark.parametrize("threshold", [0.0, 1e-9])
@pytest.mark.parametrize("sampling", [{}, SAMPLED])
def test_adaptive_loops_without_exits_equal_fixed_loops(loop_mode, threshold, sampling):
    lm = tiny_lm(loop_mode)
    for text in TEXTS[:2]:
        fixed = lm.translate(text, max_new_tokens=16, **sampling)
        adaptive = lm.translate(text, max_new_tokens=16, adaptive_threshold=threshold, **sampling)
        assert adaptive.token_ids == fixed.token_ids
        assert adaptive.loops_per_char == [TRAINED_LOOPS] * len(adaptive.text)


@pytest.mark.parametrize("loop_mode", ["add", "none"])
@pytest.mark.parametrize("n_loops", [TRAINED_LOOPS, 6])
def test_adaptive_loops_exit_early_with_a_large_threshold(loop_mode, n_loops):
    lm = tiny_lm(loop_mode)
    result = lm.translate("I love pizza", n_loops=n_loops, adaptive_threshold=THRESHOLD[1], max_new_tokens=32)
    assert len(result.loops_per_char) == len(result.text) > 1
    assert all(2 <= loops <= n_loops for loops in result.loops_per_char)
    assert min(result.loops_per_char) < n_loops
    assert result.mean_loops < n_loops
    assert result.mean_loops == sum(result.loops_per_char) / len(result.text)


@pytest.mark.parametrize("temperature", [1e-39, 1e-300, 5e-4])
def test_temperatures_too_small_to_divide_by_are_greedy(lm, temperature):
    """logits / 1e-39 overflow to inf, and softmax of inf - inf is NaN: such temperatures decode greedily."""
    greedy = sampled_ids(lm, "I love pizza")
    assert sampled_ids(lm, "I love pizza", temperature=temperature, seed=1) == greedy
