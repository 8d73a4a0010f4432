"""The per-loop trace, checked against decoding and full-recompute probabilities computed here."""

from __future__ import annotations

import math
import random
import re
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from emojilm import views
from emojilm.space import SpaceBackend
from emojilm.tokenizer import EOS_ID, char_spans, cluster_spans
from emojilm.trace import BY_LAYER_COLUMNS, BY_LOOP_COLUMNS, _show, utf8_length
from tests.tiny_lms import ARCHITECTURES, ODD_TEXTS, TRAINED_LOOPS, scripted_lm, tiny_lm

SUMMARY_COLUMNS = ["loop", "mean_p_final", "mean_entropy", "mean_kl", "answer", "same_as_final", "chars_exiting_here"]
GREEDY, SAMPLED = {}, {"temperature": 0.8, "seed": 5}
NUCLEUS = {"temperature": 0.8, "top_p": 0.9, "seed": 5}  # a cut: loops are decoded, not read off teacher forcing
NEW = 16  # max_new_tokens: enough bytes for several characters


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("add", eos_bias=1.0)


@torch.no_grad()
def loop_probs(lm, tokens: list[int], n_loops: int) -> torch.Tensor:
    """Next-byte probabilities [T, V] of the model run with n_loops loops, by full recompute."""
    return lm.model(torch.tensor([tokens]), n_loops)[0].softmax(-1)


def parse_top5(cell: str) -> list[tuple[str, float]]:
    entries = [re.fullmatch(r"(.*) (\d\.\d\d)", entry, re.DOTALL) for entry in cell.split(" · ")]
    assert all(entries), cell
    return [(m[1], float(m[2])) for m in entries]


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED, NUCLEUS], ids=["greedy", "sampled", "nucleus"])
@pytest.mark.parametrize(("loop_mode", "n_loops"), [("add", TRAINED_LOOPS), ("none", TRAINED_LOOPS), ("add", 5)])
def test_per_loop_outputs_equal_decoding_with_that_many_loops(loop_mode, n_loops, sampling):
    lm = tiny_lm(loop_mode, eos_bias=1.0)
    for text in ["I love pizza", "coffee ☕"]:
        trace = lm.trace(text, n_loops=n_loops, max_new_tokens=NEW, **sampling)
        table = trace.per_loop_outputs
        assert table["loops"].tolist() == list(range(1, n_loops + 1))
        expected = [lm.translate(text, n_loops=k, max_new_tokens=NEW, **sampling).text for k in table["loops"]]
        assert table["output"].tolist() == expected
        assert trace.output == expected[-1] == trace.generation.text
        assert table["same_as_final"].tolist() == [out == trace.output for out in expected]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_per_loop_outputs_with_gated_or_windowed_attention_equal_decoding(architecture):
    lm = tiny_lm("loop_embed", eos_bias=1.0, **ARCHITECTURES[architecture])
    trace = lm.trace("I love pizza", max_new_tokens=NEW, **SAMPLED)
    expected = [lm.translate("I love pizza", n_loops=k, max_new_tokens=NEW, **SAMPLED).text for k in (1, 2, 3)]
    assert trace.per_loop_outputs["output"].tolist() == expected


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("text", ["I love pizza", "héllo"])
@pytest.mark.parametrize("architecture", [None, *ARCHITECTURES])
def test_by_loop_probabilities_match_full_recompute(text, sampling, architecture):
    # seed 3: random weights whose answers hold whole characters in every architecture
    lm = tiny_lm("add", seed=3, eos_bias=1.0, **ARCHITECTURES.get(architecture, {}))
    trace = lm.trace(text, max_new_tokens=NEW, **sampling)
    prompt, answer = trace.generation.prompt_ids, trace.generation.token_ids
    chars = cluster_spans(char_spans(answer))
    table = trace.by_loop
    assert len(table) == TRAINED_LOOPS * len(chars) > 0
    assert table["loop"].tolist() == [k for _ in chars for k in range(1, TRAINED_LOOPS + 1)]
    assert "".join(table[table["loop"] == 1]["char"]) == trace.output

    final_probs = loop_probs(lm, prompt + answer, TRAINED_LOOPS)
    for k in range(1, TRAINED_LOOPS + 1):
        probs = loop_probs(lm, prompt + answer, k)  # loop k of the trace is the model run with k loops
        rows = table[table["loop"] == k]
        assert rows["position"].tolist() == list(range(len(chars)))
        for (char, start, end), row in zip(chars, rows.itertuples(), strict=True):
            at = range(len(prompt) - 1 + start, len(prompt) - 1 + end)  # outputs predicting the char's bytes
            p = torch.stack([probs[t, answer[t - len(prompt) + 1]] for t in at]).prod()
            entropy = sum(-(probs[t] * probs[t].log()).sum() for t in at)
            kl = sum((final_probs[t] * (final_probs[t].log() - probs[t].log())).sum() for t in at)
            assert row.char == char
            assert row.p_final_char == pytest.approx(float(p), rel=1e-4, abs=1e-9)
            assert row.entropy == pytest.approx(float(entropy), rel=1e-4, abs=1e-5)
            assert row.kl_to_final == pytest.approx(float(kl), rel=1e-3, abs=1e-5)
    assert table[table["loop"] == TRAINED_LOOPS]["kl_to_final"].abs().max() < 1e-6


@pytest.mark.parametrize("text", ["I love pizza", "héllo"])
def test_top5_alternatives_are_ranked_and_consistent(lm, text):
    table = lm.trace(text, max_new_tokens=NEW, **SAMPLED).by_loop
    for row in table.itertuples():
        top5 = parse_top5(row.top5)
        assert len(top5) == 5
        probs = [p for _, p in top5]
        assert probs == sorted(probs, reverse=True) and probs[-1] >= 0 and probs[0] <= 1
        assert top5[0] == (row.top_char, pytest.approx(row.p_top, abs=0.006))
        assert 0 < row.p_top <= 1 and 0 < row.p_final_char <= 1
        if row.top_char == row.char and "\ufffd" not in row.char:  # same bytes: the same probability
            assert row.p_top == pytest.approx(row.p_final_char, rel=1e-4)


def naive_alternatives(lm, prefix: list[int], n_loops: int, width: int = 5) -> list[tuple[str, float]]:
    """The model's top first bytes after prefix, each completed greedily by full recompute: (char, p) best first."""
    first = loop_probs(lm, prefix, n_loops)[-1].topk(width)
    found = []
    for p, lead in zip(first.values.tolist(), first.indices.tolist(), strict=True):
        ids = [lead]
        while len(ids) < utf8_length(lead):
            probs = loop_probs(lm, prefix + ids, n_loops)[-1]
            ids.append(int(probs.argmax()))
            p *= float(probs.max())
        found.append((_show(ids), p))
    return sorted(found, key=lambda cp: -cp[1])


@pytest.mark.parametrize("text", ["I love pizza", "héllo wörld ☕"])
def test_top5_alternatives_match_full_recompute(lm, text):
    trace = lm.trace(text, max_new_tokens=NEW, **SAMPLED)
    prompt, answer = trace.generation.prompt_ids, trace.generation.token_ids
    chars = cluster_spans(char_spans(answer))
    for row in trace.by_loop.itertuples():
        start = chars[row.position][1]
        expected = naive_alternatives(lm, prompt + answer[:start], row.loop)
        shown = parse_top5(row.top5)
        assert [c for c, _ in shown] == [c for c, _ in expected], (row.position, row.loop)
        assert [p for _, p in shown] == pytest.approx([p for _, p in expected], abs=0.006)


def test_a_cluster_is_one_character():
    answer = "❤️🍕"
    lm = scripted_lm(answer.encode())
    trace = lm.trace("I love pizza", n_loops=4)
    assert trace.output == answer
    table = trace.by_loop
    assert len(table) == 2 * 4
    assert table.groupby("position")["char"].agg(set).tolist() == [{"❤️"}, {"🍕"}]
    assert table["p_final_char"].min() > 0.99
    assert table["top_char"].tolist() == ["❤"] * 4 + ["🍕"] * 4  # alternatives are single code points
    assert (table["p_top"] > 0.99).all()
    assert (parse_top5(table["top5"].iloc[0])[0][0]) == "❤"


@pytest.mark.parametrize("n_loops", [TRAINED_LOOPS, 5])
def test_summary_has_one_row_per_loop(lm, n_loops):
    trace = lm.trace("I love pizza", n_loops=n_loops, max_new_tokens=NEW, adaptive_threshold=1.0)
    summary, table = trace.summary, trace.by_loop
    assert summary.columns.tolist() == SUMMARY_COLUMNS
    assert summary["loop"].tolist() == list(range(1, n_loops + 1))
    means = table.groupby("loop")[["p_final_char", "entropy", "kl_to_final"]].mean()
    for column, mean in [("mean_p_final", "p_final_char"), ("mean_entropy", "entropy"), ("mean_kl", "kl_to_final")]:
        assert summary[column].tolist() == pytest.approx(means[mean].tolist())
    assert summary["answer"].tolist() == trace.per_loop_outputs["output"].tolist()
    exits = table.drop_duplicates("position")["loops_used"].value_counts()
    assert summary["chars_exiting_here"].tolist() == [exits.get(k, 0) for k in range(1, n_loops + 1)]
    assert summary["chars_exiting_here"].sum() == table["position"].nunique()
    assert table["loops_used"].between(1, n_loops).all()
    assert list(table.columns) == BY_LOOP_COLUMNS


def test_trace_of_an_empty_answer():
    lm = tiny_lm("add", eos_bias=50.0)
    assert lm.generate(lm.prompt_ids("hi")) == [EOS_ID]
    trace = lm.trace("hi")
    assert trace.output == ""
    assert trace.by_loop.empty and list(trace.by_loop.columns) == BY_LOOP_COLUMNS
    assert trace.per_loop_outputs["output"].tolist() == [""] * TRAINED_LOOPS
    assert len(trace.summary) == TRAINED_LOOPS
    assert trace.summary["chars_exiting_here"].tolist() == [0] * TRAINED_LOOPS


@pytest.mark.parametrize("text", [*ODD_TEXTS, ("pizza " * 4000)[:20_000]])
def test_trace_of_odd_and_long_inputs(text):
    lm = tiny_lm("add")  # no EOS bias: long answers that run to the end of the context
    trace = lm.trace(text, max_new_tokens=NEW)
    assert trace.output == lm.translate(text, max_new_tokens=NEW).text
    assert len(trace.by_loop) == TRAINED_LOOPS * trace.by_loop["position"].nunique()
    assert len(trace.generation.prompt_ids) + len(trace.generation.token_ids) <= lm.model.args.max_seqlen


def test_unseeded_trace_leaves_global_rngs_untouched(lm):
    torch.manual_seed(0)
    random.seed(0)
    expected = (torch.rand(2), random.random())
    torch.manual_seed(0)
    random.seed(0)
    lm.trace("pizza", temperature=1.0, max_new_tokens=8)
    assert torch.equal(torch.rand(2), expected[0]) and random.random() == expected[1]


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_reusing_the_streamed_answer_changes_nothing(lm, sampling):
    answer = lm.translate("I love pizza", **sampling)
    reused = lm.trace("I love pizza", reuse=answer, **sampling)
    fresh = lm.trace("I love pizza", **sampling)
    assert reused.output == fresh.output == answer.text
    pd.testing.assert_frame_equal(reused.by_loop, fresh.by_loop)
    pd.testing.assert_frame_equal(reused.per_loop_outputs, fresh.per_loop_outputs)


def test_reusing_an_unseeded_sampled_answer_is_refused(lm):
    answer = lm.translate("I love pizza", temperature=0.8, seed=3)
    with pytest.raises(ValueError, match="seed"):
        lm.trace("I love pizza", temperature=0.8, reuse=answer)


@pytest.mark.parametrize("draft_loops", [0, 1, 2])
@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_a_translation_leaves_a_cache_of_its_prompt_and_answer(lm, sampling, draft_loops):
    answer = lm.translate("I love pizza", max_new_tokens=NEW, draft_loops=draft_loops, **sampling)
    fed = answer.prompt_ids + answer.token_ids[:-1]  # the last id is never fed
    fresh = lm.model.new_cache(TRAINED_LOOPS, 1, len(fed))
    lm.model(torch.tensor([fed]), TRAINED_LOOPS, cache=fresh)
    torch.testing.assert_close(answer.kv_cache.k[..., : len(fed), :], fresh.k, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(answer.kv_cache.v[..., : len(fed), :], fresh.v, rtol=1e-4, atol=1e-5)
    assert "kv_cache" not in repr(answer)
    assert lm.translate("I love pizza", adaptive_threshold=1.0).kv_cache is None  # skipped loops hold copies


@pytest.mark.parametrize("draft_loops", [0, 2])
@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_a_trace_from_the_translations_cache_equals_one_without(lm, sampling, draft_loops):
    answer = lm.translate("I love pizza", max_new_tokens=NEW, draft_loops=draft_loops, **sampling)
    with_cache = lm.trace("I love pizza", reuse=answer, max_new_tokens=NEW, **sampling)
    assert answer.kv_cache is None  # the trace took it
    without = lm.trace("I love pizza", reuse=answer, max_new_tokens=NEW, **sampling)  # prefills again
    pd.testing.assert_frame_equal(with_cache.by_loop, without.by_loop, check_exact=False, rtol=1e-4, atol=1e-6)
    pd.testing.assert_frame_equal(with_cache.per_loop_outputs, without.per_loop_outputs)
    expected = [lm.translate("I love pizza", n_loops=k, max_new_tokens=NEW, **sampling).text for k in range(1, 4)]
    assert with_cache.per_loop_outputs["output"].tolist() == expected


def test_a_bfloat16_trace_agrees_with_full_recompute():
    """bf16 (the GPU default) through the trace's branch caches and their masks, against a bf16 full recompute."""
    lm = tiny_lm("add", eos_bias=1.0)
    lm.model.to(torch.bfloat16)
    trace = lm.trace("I love pizza", max_new_tokens=NEW)
    answer = lm.translate("I love pizza", max_new_tokens=NEW).text
    assert trace.per_loop_outputs["output"].iloc[-1] == trace.output == answer
    prompt, answer = trace.generation.prompt_ids, trace.generation.token_ids
    chars = cluster_spans(char_spans(answer))
    for k in range(1, TRAINED_LOOPS + 1):
        probs = loop_probs(lm, prompt + answer, k).float()
        rows = trace.by_loop[trace.by_loop["loop"] == k]
        for (_, start, end), row in zip(chars, rows.itertuples(), strict=True):
            p = math.prod(float(probs[len(prompt) - 1 + i, answer[i]]) for i in range(start, end))
            assert row.p_final_char == pytest.approx(p, rel=0.1, abs=0.01)


@pytest.mark.parametrize("draft_loops", [0, 1, 2])
@pytest.mark.parametrize("sampling", [{}, {"temperature": 0.9}, {"temperature": 0.9, "top_p": 0.8}],
                         ids=["greedy", "sampled", "nucleus"])  # fmt: skip
def test_a_trace_of_a_translation_traces_that_answer_or_says_why(lm, sampling, draft_loops):
    """Over many seeds: the trace's full-loop answer is its output; that output is the translation's
    whenever its draws can be replayed, and otherwise the note says it is not."""
    replayable = not sampling or draft_loops == 0
    for seed in range(30):
        settings = {"seed": seed, "max_new_tokens": NEW, **sampling}
        answer = lm.translate("I love pizza", draft_loops=draft_loops, **settings)
        trace = lm.trace("I love pizza", reuse=answer, **settings)
        assert trace.per_loop_outputs["output"].iloc[-1] == trace.output
        if replayable:
            assert (trace.output, trace.note) == (answer.text, "")
        else:
            assert "not traced" in trace.note and "draft_loops=" in trace.note
            assert trace.output == lm.translate("I love pizza", **settings).text  # the same request, undrafted


def test_an_unseeded_answer_is_traced_with_the_seed_it_drew(lm):
    answer = lm.translate("I love pizza", temperature=0.9, max_new_tokens=NEW)
    trace = lm.trace("I love pizza", temperature=0.9, max_new_tokens=NEW, reuse=answer)
    assert trace.output == answer.text and trace.note == ""
    assert trace.generation.handoff.request.seed == answer.handoff.request.seed is not None


@pytest.mark.parametrize("other", [{"text": "I love cats"}, {"n_loops": 2}, {"temperature": 0.5}, {"seed": 4}])
def test_reusing_the_answer_to_another_request_is_refused(lm, other):
    answer = lm.translate("I love pizza", temperature=0.9, seed=3, max_new_tokens=NEW)
    asked = {"text": "I love pizza", "temperature": 0.9, "seed": 3, "max_new_tokens": NEW} | other
    with pytest.raises(ValueError, match="another request"):
        lm.trace(asked.pop("text"), reuse=answer, **asked)


@pytest.mark.parametrize("loop_mode", ["add", "inject_embeddings", "none"])
def test_each_layer_states_end_every_loop_with_its_state(loop_mode):
    """loop_states(each_layer=True): n_layers states per loop, the last of each the loop's own state."""
    model = tiny_lm(loop_mode).model
    tokens = torch.tensor([[256, *b"I love pizza\n"]])
    plain = list(model.loop_states(tokens, TRAINED_LOOPS))
    every = list(model.loop_states(tokens, TRAINED_LOOPS, each_layer=True))
    n_layers = model.args.n_layers
    assert len(every) == n_layers * TRAINED_LOOPS
    for loop, state in enumerate(plain):
        assert torch.equal(every[(loop + 1) * n_layers - 1], state)
    assert not torch.equal(every[0], every[n_layers - 1])  # the lens sees inside the loop


def test_the_layer_lens_is_there_when_asked_and_ends_each_loop_with_by_loop(lm):
    assert lm.trace("I love pizza", max_new_tokens=NEW).by_layer is None
    trace = lm.trace("I love pizza", max_new_tokens=NEW, per_layer=True, **SAMPLED)
    by_layer, by_loop, n_layers = trace.by_layer, trace.by_loop, lm.model.args.n_layers
    assert list(by_layer.columns) == BY_LAYER_COLUMNS
    assert len(by_layer) == n_layers * len(by_loop) and set(by_layer["layer"]) == set(range(1, n_layers + 1))
    last = by_layer[by_layer["layer"] == n_layers].drop(columns="layer").sort_values(["position", "loop"])
    same = by_loop[[c for c in BY_LAYER_COLUMNS if c != "layer"]]
    pd.testing.assert_frame_equal(last.reset_index(drop=True), same.reset_index(drop=True), check_exact=True)
    assert by_layer["p_final_char"].between(0, 1).all() and (by_layer["entropy"] >= -1e-6).all()


def test_the_trace_api_returns_the_lens_when_asked(lm):
    backend = SpaceBackend(SimpleNamespace(default="test", get=lambda *_: lm))
    plain = backend.api_trace("I love pizza", seed=1)
    lens = backend.api_trace("I love pizza", seed=1, per_layer=True)
    assert len(plain) == 4 and len(lens) == 5 and list(lens[4].columns) == BY_LAYER_COLUMNS
    with pytest.raises(ValueError, match="per_layer"):
        backend.api_trace("hi", per_layer="yes")


def test_the_pages_lens_draws_a_cell_per_block_application(lm):
    trace = lm.trace("I love pizza", max_new_tokens=NEW, per_layer=True)
    page = views.layer_lens_html(trace)
    n_chars, n_layers = len(trace.by_loop) // TRAINED_LOOPS, lm.model.args.n_layers
    assert page.count('class="elm-cell') == n_chars * TRAINED_LOOPS * n_layers
    assert page.count("elm-loop-end") == n_chars * TRAINED_LOOPS
    assert "<script" not in page and "without per_layer" in views.layer_lens_html(lm.trace("I love pizza"))
