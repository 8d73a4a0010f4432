"""Self-speculative decoding against plain decoding, and its sampling rule against the target distribution."""

from __future__ import annotations

import pytest
import torch

from emojilm.config import LOOP_MODES
from emojilm.generation import decode_steps
from emojilm.sampling import SamplingParams, filtered_probs
from emojilm.speculative import (
    DraftStats,
    break_even_share,
    default_draft_loops,
    judge,
    speculative_tokens,
    worth_drafting_ahead,
)
from tests.tiny_lms import ARCHITECTURES, TRAINED_LOOPS, naive_greedy, tiny_lm

TEXTS = ["I love pizza", "héllo wörld ☕"]


# A random model's read-out is flat unless sharpened: its drafts stop after one unsure
# byte (DRAFT_CONFIDENCE); sharpened, they run to several bytes, some rejected.
@pytest.mark.parametrize("head_scale", [4.0, 20.0], ids=["unsure-drafts", "long-drafts"])
@pytest.mark.parametrize("loop_mode", LOOP_MODES)
@pytest.mark.parametrize(
    ("n_loops", "draft_loops"), [(2, 1), (TRAINED_LOOPS, 1), (TRAINED_LOOPS, TRAINED_LOOPS - 1), (6, 2)]
)
def test_greedy_speculative_equals_naive_greedy(loop_mode, n_loops, draft_loops, head_scale):
    lm = tiny_lm(loop_mode, eos_bias=1.0, head_scale=head_scale)
    for text in TEXTS:
        prompt = lm.prompt_ids(text)
        result = lm.translate(text, n_loops=n_loops, max_new_tokens=24, draft_loops=draft_loops)
        assert result.token_ids == naive_greedy(lm, prompt, n_loops, max_new_tokens=24)
        assert result.loops_per_char == [n_loops] * len(result.text)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize(("n_loops", "draft_loops"), [(TRAINED_LOOPS, 1), (6, 2)])
def test_greedy_speculative_with_gated_or_windowed_attention_equals_naive_greedy(architecture, n_loops, draft_loops):
    lm = tiny_lm("gated", eos_bias=1.0, head_scale=20.0, **ARCHITECTURES[architecture])
    for text in TEXTS:
        result = lm.translate(text, n_loops=n_loops, max_new_tokens=24, draft_loops=draft_loops)
        assert result.token_ids == naive_greedy(lm, lm.prompt_ids(text), n_loops, max_new_tokens=24)
        assert result.draft_stats.drafted > 0


@pytest.mark.parametrize("draft_length", [1, 3, 8])
@pytest.mark.parametrize("max_new_tokens", [1, 2, 5, 17])
def test_draft_length_and_budget_do_not_change_greedy_output(draft_length, max_new_tokens):
    lm = tiny_lm("add")
    prompt = torch.tensor([lm.prompt_ids("pizza")])
    stats = DraftStats()
    steps = speculative_tokens(lm.model, prompt, TRAINED_LOOPS, 1, SamplingParams(), max_new_tokens,
                               torch.Generator(), stats, draft_length, min_confidence=0.0)  # fmt: skip
    ids = list(steps)  # EOS is not special here: every budgeted id comes out
    assert ids == naive_greedy(lm, prompt[0].tolist(), TRAINED_LOOPS, max_new_tokens)[:max_new_tokens]
    assert len(ids) == max_new_tokens
    assert 0 <= stats.accepted <= stats.drafted <= stats.rounds * draft_length


@pytest.mark.parametrize(("min_confidence", "drafts"), [(0.0, "full"), (0.5, "mixed"), (1.01, "one byte")])
def test_draft_confidence_sets_how_far_drafts_go_not_the_output(min_confidence, drafts):
    lm = tiny_lm("add", head_scale=10.0)  # sure of some bytes, not of others
    prompt = torch.tensor([lm.prompt_ids("pizza")])
    stats = DraftStats()
    steps = speculative_tokens(lm.model, prompt, TRAINED_LOOPS, 1, SamplingParams(), 30, torch.Generator(), stats,
                               draft_length=4, min_confidence=min_confidence, break_even=0.0)  # fmt: skip
    assert list(steps) == naive_greedy(lm, prompt[0].tolist(), TRAINED_LOOPS, 30)
    if drafts == "full":  # every round but the last (cut by the budget) drafts 4 bytes
        assert stats.drafted > 4 * (stats.rounds - 1)
    elif drafts == "one byte":
        assert stats.drafted == stats.rounds
    else:
        assert stats.rounds < stats.drafted < 4 * (stats.rounds - 1)


def layer_applications(lm, steps) -> tuple[list, int]:
    """The ids a (lazy) iterator yields, and how many positions the first layer was applied to on the way."""
    positions = 0

    def count(_, inputs) -> None:
        nonlocal positions
        positions += inputs[0].shape[0] * inputs[0].shape[1]

    handle = lm.model.layers[0].register_forward_pre_hook(count)
    try:
        return [int(i) for i in steps], positions
    finally:
        handle.remove()


def test_drafts_stay_one_byte_while_too_few_drafted_bytes_are_kept():
    """Below the break-even share, rounds stop drafting ahead: the output stays the same, and
    the layers run on exactly as many positions as in plain decoding (no loop computed twice)."""
    lm = tiny_lm("add", head_scale=20.0)
    prompt = torch.tensor([lm.prompt_ids("pizza")])
    expected, plain_work = layer_applications(lm, decode_steps(lm.model, prompt, [TRAINED_LOOPS], SamplingParams(), 30))
    assert expected == naive_greedy(lm, prompt[0].tolist(), TRAINED_LOOPS, 30)
    runs = {}
    for break_even in (0.0, 0.99):
        stats = DraftStats()
        steps = speculative_tokens(lm.model, prompt, TRAINED_LOOPS, 1, SamplingParams(), 30, torch.Generator(),
                                   stats, draft_length=4, min_confidence=0.0, break_even=break_even)  # fmt: skip
        ids, work = layer_applications(lm, steps)
        assert ids == expected
        runs[break_even] = stats, work
    assert runs[0.0][0].drafted > runs[0.0][0].rounds  # rounds draft ahead
    assert runs[0.99][0].drafted == runs[0.99][0].rounds  # no round does: not even the prior reaches 0.99
    assert runs[0.99][1] == plain_work


@pytest.mark.parametrize(("draft_loops", "n_loops"), [(1, 4), (2, 8), (3, 8), (1, 2)])
@pytest.mark.parametrize("second_position_cost", [0.0, 0.2, 0.5])
def test_at_the_break_even_share_a_two_byte_round_yields_what_plain_steps_do(draft_loops, n_loops,
                                                                             second_position_cost):  # fmt: skip
    share = break_even_share(draft_loops, n_loops, second_position_cost)
    # Cost in one-position passes of all loops: two draft passes, then the other loops over two positions.
    round_cost = (2 * draft_loops + (n_loops - draft_loops) * (1 + second_position_cost)) / n_loops
    expected_bytes = 1 + share  # the replacement (or next) byte, plus the first drafted byte when kept
    assert expected_bytes == pytest.approx(round_cost)  # as many bytes per pass as plain decoding
    if second_position_cost == 0.0:
        assert share == pytest.approx(draft_loops / n_loops)
    else:  # verifying two positions costs more than one: a draft must be kept more often
        assert share > draft_loops / n_loops


def test_worth_drafting_ahead_compares_the_kept_share_with_break_even():
    assert worth_drafting_ahead(DraftStats(), 0.25)  # before any draft: one kept in two
    assert not worth_drafting_ahead(DraftStats(rounds=5, drafted=10, accepted=1), 0.25)
    assert worth_drafting_ahead(DraftStats(rounds=5, drafted=10, accepted=8), 0.25)
    assert worth_drafting_ahead(DraftStats(rounds=5, drafted=10, accepted=0), 0.0)


@pytest.mark.parametrize("stop_id", [None, "first answer id"])
def test_a_drafted_stop_id_ends_the_draft(stop_id):
    """Drafting stops at a drafted stop id (EOS): the output up to it is unchanged, and no byte is drafted past it."""
    lm = tiny_lm("add")
    prompt = torch.tensor([lm.prompt_ids("pizza")])
    expected = naive_greedy(lm, prompt[0].tolist(), TRAINED_LOOPS, 12)
    stop = expected[1] if stop_id else None  # the first byte a round drafts
    stats = DraftStats()
    steps = speculative_tokens(lm.model, prompt, TRAINED_LOOPS, 1, SamplingParams(), 12, torch.Generator(), stats,
                               draft_length=6, min_confidence=0.0, stop_id=stop)  # fmt: skip
    ids = [next(steps) for _ in range(2)]
    assert ids == expected[:2]
    assert stats.drafted == (1 if stop_id else 6)


def test_the_bundled_model_accepts_most_drafted_bytes():
    from emojilm import load

    lm = load("bundled")
    plain = lm.translate("I love pizza")
    fast = lm.translate("I love pizza", draft_loops=default_draft_loops(lm.n_loops))
    assert fast.token_ids == plain.token_ids
    assert "🍕" in fast.text
    assert fast.draft_stats.acceptance > 0.5  # one loop already knows most bytes of an emoji


def test_seeded_speculative_sampling_is_reproducible():
    lm = tiny_lm("add")
    runs = [lm.translate("pizza", temperature=1.0, seed=s, draft_loops=1, max_new_tokens=16) for s in (3, 3, 4)]
    assert runs[0].token_ids == runs[1].token_ids
    assert runs[0].token_ids != runs[2].token_ids
    assert runs[0].draft_stats.drafted > 0


@pytest.mark.parametrize("params", [SamplingParams(temperature=1.0), SamplingParams(temperature=0.7, top_p=0.8)])
def test_judged_drafts_are_distributed_as_the_full_model(params):
    """Draft a ~ q, keep or replace it by the rule: the outcome must follow p (chi-square over 8 ids)."""
    gen = torch.Generator().manual_seed(0)
    full, draft = torch.randn(1, 8, generator=gen) * 2, torch.randn(1, 8, generator=gen) * 2
    p, q = filtered_probs(full, params)[0].double(), filtered_probs(draft, params)[0]
    n = 20000
    counts = torch.zeros(8, dtype=torch.float64)
    for _ in range(n):
        a = torch.multinomial(q, 1, generator=gen)
        kept, replacement = judge(a, draft, full, params, gen)
        counts[int(a) if kept else replacement] += 1
    seen = p > 0
    assert counts[~seen].sum() == 0  # nothing outside top-p ever comes out
    chi2 = float(((counts[seen] - n * p[seen]) ** 2 / (n * p[seen])).sum())
    assert chi2 < 30  # 99.99th percentile of chi-square with ≤ 7 degrees of freedom is ~29.9
    # and the draft alone would have been caught: its distribution is far from p
    chi2_draft = float(((n * q.double()[seen] - n * p[seen]) ** 2 / (n * p[seen])).sum())
    assert chi2_draft > 100


def test_judge_greedy_keeps_the_agreeing_prefix():
    full = torch.nn.functional.one_hot(torch.tensor([5, 6, 7, 8]), 10).float()
    assert judge(torch.tensor([5, 6, 7, 8]), full, full, SamplingParams(), torch.Generator()) == (4, None)
    assert judge(torch.tensor([5, 6, 1, 8]), full, full, SamplingParams(), torch.Generator()) == (2, 7)
    assert judge(torch.tensor([0, 6, 7, 8]), full, full, SamplingParams(), torch.Generator()) == (0, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"draft_loops": TRAINED_LOOPS}, "draft_loops"),
        ({"draft_loops": 1, "n_loops": 1}, "draft_loops"),
        ({"draft_loops": -1}, "draft_loops"),
        ({"draft_loops": 1.5}, "draft_loops"),
        ({"draft_loops": 1, "adaptive_threshold": 0.1}, "cannot be combined"),
    ],
)
def test_bad_draft_options_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_lm("add").translate("pizza", **kwargs)


def test_default_draft_loops():
    assert [default_draft_loops(n) for n in (1, 2, 4, 8, 16)] == [0, 1, 1, 2, 4]
