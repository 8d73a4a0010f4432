"""What one request may cost, and that serving many leaves memory flat.

Compute is counted, not timed: every (token, layer, loop) a block processes is one
application. With the per-(loop, layer) KV cache each context position is processed once
per loop and layer, so a plain translation costs at most context × loops × layers, whatever
text was pasted; the page caps the loops (LOOPS_FACTOR × trained) and the bytes
(MAX_NEW_TOKENS). A self-speculative round (the Space's greedy answers) computes at most
DRAFT_LENGTH positions for each byte it yields, so costs at most DRAFT_LENGTH times that.
"""

from __future__ import annotations

import gc
import os
import random
from types import SimpleNamespace

import pytest

import emojilm
from emojilm.loadtest import rss_mb
from emojilm.request import LOOPS_FACTOR, MAX_NEW_TOKENS, MAX_TEXT_CHARS, MIN_PROMPT
from emojilm.space import EXAMPLES, SpaceBackend
from emojilm.speculative import DRAFT_LENGTH
from tests.tiny_lms import TRAINED_LOOPS, tiny_lm

ALTERNATIVES = 5  # what the trace branches on per character and loop (EmojiLM.trace's default)


def backend_for(lm) -> SpaceBackend:
    return SpaceBackend(SimpleNamespace(default="test", get=lambda *_: lm))


def count_block_applications(lm) -> list[int]:
    """A one-item list that grows by batch × tokens each time any layer runs."""
    count = [0]

    def hook(_module, args):
        x = args[0]
        count[0] += x.shape[0] * x.shape[1]

    for layer in lm.model.layers:
        layer.register_forward_pre_hook(hook)
    return count


@pytest.fixture
def endless_lm():
    """A model that never writes EOS, with the bundled model's context: every request runs to its cap."""
    return tiny_lm(eos_bias=-20.0, max_seqlen=256)


def worst_request(lm) -> dict:
    """The most the page lets one user ask for: the longest text, the most loops and bytes."""
    text = ("I love pizza 🍕 " * 2000)[:MAX_TEXT_CHARS]
    return {"text": text, "loops": LOOPS_FACTOR * TRAINED_LOOPS, "max_new_tokens": MAX_NEW_TOKENS, "seed": 1}


# The factor over context × loops × layers: a drafted round's most, or 1 for a plain answer.
@pytest.mark.parametrize("temperature, drafts", [(0.0, DRAFT_LENGTH), (1.0, 1)], ids=["greedy-drafted", "sampled"])
def test_one_translation_costs_at_most_context_times_loops_times_layers(endless_lm, temperature, drafts):
    lm, count = endless_lm, count_block_applications(endless_lm)
    request = worst_request(lm)
    _, summary = backend_for(lm).api_translate(**request, temperature=temperature)
    args = lm.model.args
    # The answer ran to its cap (less the odd BOS a sampler may pick, which is not shown as a byte).
    assert int(summary.split()[0]) >= 0.9 * (args.max_seqlen - MIN_PROMPT)
    assert "cut to fit" in summary  # and the 20,000 characters were cut to fit the context
    assert 0 < count[0] <= drafts * args.max_seqlen * request["loops"] * args.n_layers


def test_one_trace_is_bounded_too(endless_lm):
    """translate + teacher forcing + one decode per loop count + (loops × alternatives) branches of
    at most 3 bytes per answer character: each at most context × loops × layers."""
    lm, count = endless_lm, count_block_applications(endless_lm)
    request = worst_request(lm)
    _, _, per_loop, _ = backend_for(lm).api_trace(**request)
    loops, args = request["loops"], lm.model.args
    per_pass = args.max_seqlen * loops * args.n_layers
    assert len(per_loop) == loops
    assert 0 < count[0] <= per_pass * (3 + loops + 3 * ALTERNATIVES * loops)


def test_memory_stays_flat_over_hundreds_of_requests():
    """300 translations and traces on the bundled model, through the Space's API functions:
    after a warm-up, resident memory must not keep growing (no per-request caches or traces kept)."""
    if rss_mb(os.getpid()) is None:
        pytest.skip("resident memory is read from /proc (Linux)")
    backend = backend_for(emojilm.load("bundled"))
    rng = random.Random(0)

    def serve(n: int) -> float:
        for i in range(n):
            text = f"{rng.choice(EXAMPLES)} {rng.randrange(10**6)}"  # never the same request twice
            call = backend.api_trace if i % 5 == 0 else backend.api_translate
            call(text, temperature=0.8, max_new_tokens=16, seed=rng.randrange(2**31))
        gc.collect()
        return rss_mb(os.getpid())

    warm = serve(30)
    samples = [serve(90) for _ in range(3)]
    assert max(samples) - warm < 25, f"resident memory grew from {warm:.0f} MB to {samples} MB"
