"""The batching engine: requests decoded together give the bytes they give alone.

Batch invariance is checked bitwise, on a tiny random model and on the bundled
model: seeded requests alone, then in random mixes of 2 to 8 with different
lengths, loop counts and sampling settings, submitted together and at staggered
steps (joining a batch already running).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import emojilm
import emojilm.lm
import emojilm.trace
from emojilm import kernels
from emojilm.engine import Engine, Feed, PromptsCache, Row, batch_step, decode_rows, prompts_round_alike
from emojilm.kvcache import BranchCache, KVCache
from emojilm.request import Request
from emojilm.space import SpaceBackend
from emojilm.step import prefill
from tests.tiny_lms import TRAINED_LOOPS, tiny_lm

TEXTS = ["I love pizza", "so much snow", "we won!", "Happy birthday to my dog", "hi", "a cup of coffee ☕", "ok"]


@pytest.fixture(scope="module", params=["tiny", "bundled"])
def lm(request):
    model = tiny_lm("add", eos_bias=0.5) if request.param == "tiny" else emojilm.load("bundled")
    model.model.fuse_weights()
    return model


def random_request(lm, rng: random.Random) -> Request:
    sampling = rng.choice(
        [{}, {"temperature": 0.9}, {"temperature": 1.2, "top_p": 0.8}, {"temperature": 0.7, "top_k": 5}]
    )
    n_loops = rng.randint(1, lm.limits.max_loops)
    adaptive = {"adaptive_threshold": 0.2} if rng.random() < 0.2 else {}
    drafted = (
        {"draft_loops": rng.randint(1, n_loops - 1)} if n_loops > 1 and not adaptive and rng.random() < 0.3 else {}
    )
    return lm.request(
        rng.choice(TEXTS),
        seed=rng.randrange(2**31),
        n_loops=n_loops,
        max_new_tokens=rng.randint(1, 24),
        **sampling,
        **adaptive,
        **drafted,
    )


def run(engine: Engine, lm, request: Request, started: threading.Barrier | None = None) -> list[tuple[int, int]]:
    ids, _ = lm.prompt(request.text, request.max_new_tokens)
    if started is not None:
        started.wait()
    return list(engine.tokens(engine.submit(lm.model, ids, request, lm.tokenizer.eos_id)))


def together(engine: Engine, lm, requests: list[Request]) -> list[list[tuple[int, int]]]:
    """Submit requests from threads at once, as concurrent visitors do."""
    results: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def visitor(i: int) -> None:
        results[i] = run(engine, lm, requests[i], barrier)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def prefilled_row(lm, request: Request, **fields) -> Row:
    """A row for the request with its prompt prefilled in a cache of its own (room for its answer): its
    state after its loops, ready to step."""
    prompt = lm.prompt_ids(request.text)
    cache = lm.model.new_cache(request.n_loops, 1, len(prompt) + request.max_new_tokens)
    states = prefill(lm.model, torch.tensor([prompt]), request.n_loops, cache)
    return Row(lm.model, request, prompt, cache=cache, position=len(prompt), hidden=states[-1][0, -1],
               loops=request.n_loops, **fields)  # fmt: skip


def test_fifty_seeded_requests_give_the_same_bytes_alone_and_in_any_mix(lm):
    rng = random.Random(0)
    requests = [random_request(lm, rng) for _ in range(50)]
    engine = Engine()
    alone = [run(engine, lm, r) for r in requests]
    assert engine.widest == 1
    order = list(range(50))
    rng.shuffle(order)
    mixed: dict[int, list] = {}
    while order:
        size = rng.randint(2, 8)
        group, order = order[:size], order[size:]
        for i, result in zip(group, together(engine, lm, [requests[i] for i in group]), strict=True):
            mixed[i] = result
    assert engine.widest > 1 and engine.widest_prefill > 1  # requests did share steps and prefills
    assert [mixed[i] for i in range(50)] == alone


def test_new_kv_caches_are_written_before_they_are_read(lm, monkeypatch):
    """KVCache.empty does not zero its memory: with NaN in every new cache, requests (sampled, adaptive,
    drafted; alone, mixed, and through the library's own decoding) and traces keep their bytes."""
    requests = [random_request(lm, random.Random(seed)) for seed in range(12)]
    trace_request = lm.request("Happy birthday to my dog", max_new_tokens=6, temperature=0.9, seed=4)

    def outputs() -> tuple:
        engine = Engine()
        alone = [run(engine, lm, r) for r in requests]
        library = [lm.translate(r).text for r in requests]
        traced = lm.trace(trace_request, engine=engine)
        return alone, together(engine, lm, requests[:6]), library, traced.per_loop_outputs, traced.by_loop

    expected = outputs()
    new_cache = KVCache.empty.__func__

    def poisoned(cls, *args, **kwargs) -> KVCache:
        cache = new_cache(cls, *args, **kwargs)
        cache.k.fill_(float("nan"))
        cache.v.fill_(float("nan"))
        return cache

    monkeypatch.setattr(KVCache, "empty", classmethod(poisoned))
    got = outputs()
    assert got[:3] == expected[:3]
    assert got[1] == expected[0][:6]
    pd.testing.assert_frame_equal(got[3], expected[3])
    pd.testing.assert_frame_equal(got[4], expected[4])


def test_a_row_gives_bitwise_the_same_logits_alone_and_in_a_batch(lm):
    """Through the engine's step: one request's logits after a step, alone and beside 1 to 7 others."""
    model, rng = lm.model, random.Random(1)

    def logits_after_step(texts: list[str], row: int) -> torch.Tensor:
        rows = []
        for i, text in enumerate(texts):
            next_id = ord("x") if i == row else rng.randrange(256)
            rows.append(prefilled_row(lm, lm.request(text), next_id=next_id))
        out = batch_step(model, rows)
        return model.readout(out.hidden[row, -1][None])

    alone = logits_after_step(["I love pizza"], 0)
    for others in range(1, 8):
        texts = [rng.choice(TEXTS[1:]) for _ in range(others)]
        at = rng.randrange(others + 1)
        texts.insert(at, "I love pizza")
        assert torch.equal(logits_after_step(texts, at), alone)


@pytest.mark.parametrize("weight_format", ["bfloat16", "int8"])
def test_a_row_beside_a_traces_branches_gets_the_bits_it_gets_alone(weight_format):
    """On emojilm's kernels a decode step runs each block in one native call, attention included, for
    every participant: a trace's branches (BranchCache) as much as a request's own cache, so a request
    stepping beside a trace's alternatives keeps the bits it gets alone (it fell back to torch's
    attention with them before)."""
    lm = emojilm.load("bundled", dtype=weight_format)
    model = lm.model
    if not model.native_blocks:
        pytest.skip("emojilm's kernels do not serve here: every step takes torch's path alike")
    n_loops = lm.n_loops

    def hidden_after_step(with_branches: bool) -> torch.Tensor:
        rows = [prefilled_row(lm, lm.request("I love pizza"), next_id=ord("x"))]
        if with_branches:
            trunk_ids = lm.prompt_ids("so much snow")
            trunk = model.new_cache(n_loops, 1, len(trunk_ids))
            prefill(model, torch.tensor([trunk_ids]), n_loops, trunk)
            branches = BranchCache.grow(trunk, torch.tensor([len(trunk_ids), len(trunk_ids) - 3]), 2)
            feed = Feed(branches, 0, [ord("a"), ord("b")], [n_loops, n_loops], [0.0, 0.0])
            rows.append(SimpleNamespace(feed=lambda: feed, width=2, last_loop=n_loops))
        with torch.inference_mode():
            return batch_step(model, rows).hidden[0]

    assert torch.equal(hidden_after_step(True), hidden_after_step(False))


def test_a_drafting_row_drafts_in_the_batch_and_checks_its_drafts_there(lm):
    """Self-speculative rows: drafts with the first loops in the batch, checks in a forward of the rows
    whose drafts ended. Greedy, they give plain greedy bytes, and drafted bytes are kept (the fifty-request
    test mixes drafting rows, greedy and sampled, among the others)."""
    engine, kept = Engine(), 0
    for text in TEXTS:
        plain = lm.request(text, max_new_tokens=16)
        row = engine.submit(lm.model, lm.prompt_ids(text), replace(plain, draft_loops=1), lm.tokenizer.eos_id)
        assert list(engine.tokens(row)) == run(engine, lm, plain)
        kept += row.stats.accepted
    assert kept > 0


def test_drafts_checked_together_run_each_rows_own_loop_count(lm):
    """Rows drafting with the same draft loops but different loop counts, in lockstep so that their drafts
    end at the same steps and are checked in one forward: each gives the bytes it gives alone (a check
    that ran every row to the first row's loop count changed the later rows' answers)."""
    top = lm.limits.max_loops

    def prefilled(text: str, n_loops: int, seed: int) -> Row:
        request = lm.request(text, n_loops=n_loops, draft_loops=1, max_new_tokens=16, temperature=0.9, seed=seed)
        return prefilled_row(lm, request, eos_id=lm.tokenizer.eos_id, generator=request.sampling.generator())

    specs = [(text, n_loops, seed) for seed, text in enumerate(TEXTS[:4]) for n_loops in (2, top)]
    alone = [decode_rows([prefilled(*spec)])[0] for spec in specs]
    assert decode_rows([prefilled(*spec) for spec in specs]) == alone


def test_a_prompt_prefilled_beside_others_gets_the_bits_it_gets_alone(lm):
    """The engine's prefill of requests joining at one step: their prompts side by side in one forward,
    each in its own cache; alone, it is the plain prefill."""
    model, n_loops = lm.model, lm.n_loops
    assert prompts_round_alike(model)

    def prefilled(texts: list[str], at: int) -> tuple[torch.Tensor, ...]:
        prompts = [lm.prompt_ids(text) for text in texts]
        caches = [model.new_cache(n_loops, 1, len(p)) for p in prompts]
        tokens = torch.tensor([[i for p in prompts for i in p]])
        states = prefill(model, tokens, n_loops, PromptsCache(caches, [len(p) for p in prompts]))
        end = sum(len(p) for p in prompts[: at + 1])
        return states[-1][0, end - 1], caches[at].k, caches[at].v

    prompt = lm.prompt_ids("I love pizza")
    cache = model.new_cache(n_loops, 1, len(prompt))
    plain = (prefill(model, torch.tensor([prompt]), n_loops, cache)[-1][0, -1], cache.k, cache.v)
    rng = random.Random(2)
    for others in ([], ["so much snow"], TEXTS[1:], ["hi"] * 20):
        at = rng.randrange(len(others) + 1)
        texts = [*others[:at], "I love pizza", *others[at:]]
        assert all(torch.equal(a, b) for a, b in zip(prefilled(texts, at), plain, strict=True)), texts


@pytest.mark.parametrize("share", [0.0, 1e6])
def test_an_idle_engine_waits_a_share_of_a_step_for_requests_arriving_together(lm, monkeypatch, share):
    """Requests arriving a few milliseconds apart at an engine with no rows in flight share one prefill
    when it waits for them (GATHER_SHARE of its last step, or until it is full), else the first is
    prefilled alone; their bytes are the same."""
    requests = [lm.request(text, max_new_tokens=6, seed=i, temperature=0.9) for i, text in enumerate(TEXTS[:3])]
    engine = Engine(max_rows=len(requests))
    alone = [run(engine, lm, r) for r in requests]  # these also time the model's step
    monkeypatch.setattr(emojilm.engine, "GATHER_SHARE", share)  # large: it waits until it is full
    engine.widest_prefill = 0
    rows = []
    for r in requests:
        rows.append(engine.submit(lm.model, lm.prompt_ids(r.text), r, lm.tokenizer.eos_id))
        time.sleep(0.01)
    assert [list(engine.tokens(row)) for row in rows] == alone
    if share:
        assert engine.widest_prefill == len(requests)
    else:  # the first, at least, was prefilled on its own
        assert engine.widest_prefill < len(requests)


def test_a_traces_rows_go_at_once_without_waiting_for_company(lm, monkeypatch):
    """A trace's per-loop answers and alternatives carry on its pass (no prefill to share): an idle
    engine steps them at once, however long it would wait for requests arriving together."""
    engine = Engine()
    request = lm.request("so much snow", max_new_tokens=8, seed=5, temperature=0.9)
    answer = lm.translate(request, engine=engine)  # this also times the model's step
    expected = lm.trace(request, reuse=answer)
    monkeypatch.setattr(emojilm.engine, "GATHER_SHARE", 1e9)  # a request would wait for months
    traced: list = []
    tracing = threading.Thread(
        target=lambda: traced.append(lm.trace(request, reuse=answer, engine=engine)), daemon=True
    )
    tracing.start()
    tracing.join(timeout=120)
    assert traced, "the trace's rows waited to gather"
    pd.testing.assert_frame_equal(traced[0].per_loop_outputs, expected.per_loop_outputs)


def test_a_cancelled_request_leaves_and_the_others_finish(lm):
    engine = Engine()
    long = lm.request("I love pizza", max_new_tokens=24, seed=1, temperature=0.0)
    stream = engine.tokens(engine.submit(lm.model, lm.prompt_ids(long.text), long, lm.tokenizer.eos_id))
    next(stream)
    stream.close()  # the visitor left
    other = lm.request("so much snow", max_new_tokens=8, seed=2)
    assert run(engine, lm, other) == run(Engine(), lm, other)
    assert engine.rows == []


def test_a_bad_request_fails_alone(lm):
    engine = Engine()
    good = lm.request("I love pizza", max_new_tokens=8, seed=3)
    too_long = lm.request("x", max_new_tokens=8, seed=3)
    with pytest.raises(ValueError, match="max_seqlen"):  # a prompt past the context fails in its own prefill
        list(engine.tokens(engine.submit(lm.model, list(range(lm.model.args.max_seqlen + 1)), too_long)))
    assert len(run(engine, lm, good)) >= 1


def test_requests_decode_as_their_loop_counts_say():
    """An engine row with k loops answers as the library does with k loops (greedy, fused tiny model)."""
    lm = tiny_lm("add", eos_bias=0.5)
    lm.model.fuse_weights()
    engine = Engine()
    for k in range(1, TRAINED_LOOPS + 1):
        request = lm.request("I love pizza", n_loops=k, max_new_tokens=12)
        ids = [token for token, _ in run(engine, lm, request)]
        assert lm.tokenizer.decode(ids) == lm.translate(request).text


def test_rows_wait_for_cache_memory_and_all_finish(lm):
    """With room for one request's cache at a time, requests take turns; their bytes are as before."""
    requests = [lm.request(text, max_new_tokens=8, seed=i) for i, text in enumerate(TEXTS[:4])]
    roomy = Engine()
    expected = [run(roomy, lm, r) for r in requests]
    one_at_a_time = max(Row(lm.model, r, lm.prompt_ids(r.text)).cache_bytes for r in requests)
    tight = Engine(max_cache_bytes=one_at_a_time)
    assert together(tight, lm, requests) == expected
    assert tight.widest == 1


def test_rows_step_one_by_one_where_no_row_count_gives_steady_bits(monkeypatch):
    """Where a product's bits change with the row count at every count (here, made to), the engine
    steps each row alone, and a request still gets the bytes it gets alone."""
    kind = kernels.DenseProduct
    real = kind.product

    def rounds_by_row_count(self, x):
        return real(self, x) + 1e-4 * (x.numel() // x.shape[-1])

    monkeypatch.setattr(kind, "product", rounds_by_row_count)
    monkeypatch.setattr(kernels, "_STEADY", {})  # found again, with this kernel
    lm = tiny_lm("inject_embeddings")
    lm.model.fuse_weights()
    assert not lm.model.rows_steady and not prompts_round_alike(lm.model)
    requests = [lm.request(text, max_new_tokens=8, seed=i, temperature=0.9) for i, text in enumerate(TEXTS[:4])]
    alone = [run(Engine(), lm, r) for r in requests]
    engine = Engine()
    assert together(engine, lm, requests) == alone
    assert engine.widest == 1 and engine.widest_prefill == 1


def test_one_engine_serves_two_models_at_once(lm):
    """Rows of different models step in their own batches, side by side, with the bytes they give alone."""
    other = tiny_lm("inject_embeddings", eos_bias=0.5)
    other.model.fuse_weights()
    mine = [lm.request(text, max_new_tokens=10, seed=i, temperature=0.9) for i, text in enumerate(TEXTS[:3])]
    theirs = [other.request(text, max_new_tokens=10, seed=i, temperature=0.9) for i, text in enumerate(TEXTS[3:6])]
    engine = Engine()
    alone = [run(engine, lm, r) for r in mine] + [run(engine, other, r) for r in theirs]
    results: list = [None] * 6
    barrier = threading.Barrier(6)

    def visitor(i: int) -> None:
        model, request = (lm, mine[i]) if i < 3 else (other, theirs[i - 3])
        results[i] = run(engine, model, request, barrier)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == alone


def test_jobs_run_on_the_engine_thread_between_steps(lm):
    """A job (a trace, say) runs on the engine's thread while rows are in flight; its error reaches its
    caller alone, and the rows finish with the bytes they give without the job."""
    engine = Engine()
    request = lm.request("I love pizza", max_new_tokens=16, seed=5, temperature=0.9)
    expected = run(engine, lm, request)
    stream = engine.tokens(engine.submit(lm.model, lm.prompt_ids(request.text), request, lm.tokenizer.eos_id))
    first = next(stream)
    assert engine.run(lambda: threading.current_thread().name) == "emojilm-engine"
    traced = engine.run(lambda: lm.trace("so much snow", max_new_tokens=4).output)
    assert traced == lm.trace("so much snow", max_new_tokens=4).output
    with pytest.raises(ZeroDivisionError):
        engine.run(lambda: 1 / 0)
    assert [first, *stream] == expected
    assert engine.run(lambda: engine.run(lambda: 7)) == 7  # a job may run another: no deadlock


def test_the_space_traces_on_the_engine_thread_when_batched(lm, monkeypatch):
    """The app's torch work runs on one thread (the engine module's docstring): answers and the trace's
    per-loop answers as rows, the rest of a trace as a job; unbatched (ZeroGPU), each call computes where
    it is made."""
    threads, begin = [], emojilm.lm.begin_trace

    def recorded(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return begin(*args, **kwargs)

    monkeypatch.setattr(emojilm.lm, "begin_trace", recorded)
    monkeypatch.setattr(emojilm.trace, "begin_trace", recorded)
    registry = SimpleNamespace(default="m", get=lambda *_: lm)
    request = lm.request("I love pizza", max_new_tokens=6)
    SpaceBackend(registry).trace_views(lm, request)
    SpaceBackend(registry).api_trace("I love pizza", max_new_tokens=6, per_layer=True)
    SpaceBackend(registry, batched=False).trace_views(lm, request)
    assert threads == ["emojilm-engine", "emojilm-engine", threading.current_thread().name]


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_a_traces_per_loop_answers_decode_in_the_batch_as_alone(lm, temperature):
    """The trace's per-loop answers are engine rows: decoded beside other visitors' answers, they give
    the tables the trace gives without an engine."""
    engine = Engine()
    others = [lm.request(text, max_new_tokens=24, seed=i, temperature=0.9) for i, text in enumerate(TEXTS)]
    alone = [run(engine, lm, r) for r in others]
    rows = [engine.submit(lm.model, lm.prompt_ids(r.text), r, lm.tokenizer.eos_id) for r in others]
    texts = ["a rainy day at the beach", "we are going to the mountains", "so much snow"]
    for text in texts:
        request = lm.request(text, temperature=temperature, max_new_tokens=12, seed=7)
        expected = lm.trace(request)
        traced = lm.trace(request, engine=engine)
        pd.testing.assert_frame_equal(traced.per_loop_outputs, expected.per_loop_outputs)
        pd.testing.assert_frame_equal(traced.by_loop, expected.by_loop)
    assert [list(engine.tokens(row)) for row in rows] == alone
    assert engine.widest > 1


def test_a_traces_alternatives_step_beside_another_visitors_answer(lm, monkeypatch):
    """The trace's alternatives are rows too (trace.Alternatives): their branches ride in the forwards of
    another request's steps, and neither changes the other's bytes."""
    kinds, batch_step = [], emojilm.engine.batch_step

    def recorded(model, rows):
        kinds.append({type(row).__name__ for row in rows})
        return batch_step(model, rows)

    monkeypatch.setattr(emojilm.engine, "batch_step", recorded)
    engine = Engine()
    other = lm.request("so much snow", max_new_tokens=min(60, lm.limits.max_new_tokens), seed=3, temperature=0.9)
    prompt = lm.prompt_ids(other.text)
    alone = list(engine.tokens(engine.submit(lm.model, prompt, other)))  # no EOS: it runs to its budget
    request = lm.request("Happy birthday to my dog", max_new_tokens=8, seed=4)
    expected = lm.trace(request)
    kinds.clear()
    row = engine.submit(lm.model, prompt, other)
    traced = lm.trace(request, engine=engine)
    assert list(engine.tokens(row)) == alone
    pd.testing.assert_frame_equal(traced.by_loop, expected.by_loop)
    assert {"Row", "Alternatives"} in kinds


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_the_trace_api_traces_the_engines_answer_as_the_library_does(lm, temperature):
    """/trace decodes its answer in the engine's batch, then traces it: the tables the library gives."""
    backend = SpaceBackend(SimpleNamespace(default="m", get=lambda *_: lm))
    output, by_loop, per_loop, summary = backend.api_trace("so much snow", temperature, 1.0, None, 8, 11)
    expected = lm.trace(lm.request("so much snow", temperature=temperature, max_new_tokens=8, seed=11))
    assert output == expected.output
    pd.testing.assert_frame_equal(by_loop, expected.by_loop)
    pd.testing.assert_frame_equal(per_loop, expected.per_loop_outputs)
    pd.testing.assert_frame_equal(summary, expected.summary)
