"""Tiny in-memory EmojiLMs for the generation and trace tests, plus a naive decoder.

`tiny_lm` is a random-init looped transformer (random bytes out: good for
exercising multi-byte UTF-8 handling). `scripted_lm` is built by hand so that
it writes a chosen byte string after the prompt, whatever the loop count.
"""

from __future__ import annotations

import itertools

import torch

from emojilm.config import ModelArgs
from emojilm.lm import EmojiLM, ModelInfo
from emojilm.model import LoopedTransformer
from emojilm.tokenizer import EOS_ID

TRAINED_LOOPS = 3
# Attention variants that decoding, the trace and speculative decoding must run alike (ModelArgs fields):
# a sliding window shorter than a prompt, and output gates per element or per head.
ARCHITECTURES = {
    "windowed": {"sliding_window": 5},
    "gated attention": {"attn_gate": "element"},
    "per-head gates, windowed": {"attn_gate": "head", "sliding_window": 7},
}
# Inputs that must not break anything: empty, blank, a lone surrogate, NUL, right-to-left, ZWJ.
ODD_TEXTS = [
    "",
    "   \t\n  ",
    "\ud800 lone surrogate",
    "nul\x00byte",
    "مرحبا بالعالم",
    "👩\u200d👩\u200d👧 family",
    "\u200d",
]


def _wrap(model: LoopedTransformer) -> EmojiLM:
    info = ModelInfo(
        source="test",
        folder="",
        revision=None,
        weights="",
        n_params=model.num_params(),
        device="cpu",
        dtype="float32",
        loop_mode=model.loop_mode,
        mode_source="test",
        template="newline",
        template_source="test",
    )
    return EmojiLM(model, "newline", info)


def _tiny_model(loop_mode: str, seed: int, max_seqlen: int, **architecture) -> LoopedTransformer:
    args = ModelArgs(
        dim=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        head_dim=8,
        hidden_dim=64,
        n_loops=TRAINED_LOOPS,
        loop_mode=loop_mode,
        max_seqlen=max_seqlen,
        **architecture,
    )
    torch.manual_seed(seed)
    return LoopedTransformer(args).eval()


@torch.no_grad()
def tiny_lm(
    loop_mode: str = "add",
    seed: int = 0,
    head_scale: float = 4.0,
    eos_bias: float = 0.0,
    max_seqlen: int = 128,
    **architecture,
) -> EmojiLM:
    """A random model. head_scale sharpens the output; eos_bias > 0 makes answers end;
    architecture: more ModelArgs (one of ARCHITECTURES).

    The bias works through a constant embedding coordinate that survives the
    final norm, so EOS's logit gets roughly eos_bias * sqrt(dim) extra.
    """
    model = _tiny_model(loop_mode, seed, max_seqlen, **architecture)
    model.output.weight.mul_(head_scale)
    model.tok_embeddings.weight[:, 0] = 4.0
    model.output.weight[EOS_ID, 0] += eos_bias
    return _wrap(model)


@torch.no_grad()
def scripted_lm(answer: bytes, loop_mode: str = "add") -> EmojiLM:
    """A model whose blocks are the identity and whose head maps each byte to the next one.

    After a prompt ending in "\\n" (the newline template) it writes `answer`
    then EOS, with probability ~1 at every step and every loop.
    """
    chain = [ord("\n"), *answer, EOS_ID]
    assert len(set(chain[:-1])) == len(chain) - 1, "each byte of the script must be distinct"
    model = _tiny_model(loop_mode, 0, 128)
    assert len(chain) <= model.args.dim
    for layer in model.layers:  # residual blocks that add nothing
        layer.attention.wo.weight.zero_()
        layer.feed_forward.w2.weight.zero_()
    model.tok_embeddings.weight.zero_()
    model.output.weight.zero_()
    for i, (token, following) in enumerate(itertools.pairwise(chain)):
        model.tok_embeddings.weight[token, i] = 1.0
        model.output.weight[following, i] = 10.0
    return _wrap(model)


@torch.no_grad()
def naive_greedy(lm: EmojiLM, prompt: list[int], n_loops: int, max_new_tokens: int) -> list[int]:
    """Greedy decoding by full recompute: no cache, argmax of the last position, stop at EOS."""
    ids = list(prompt)
    for _ in range(max_new_tokens):
        logits = lm.model(torch.tensor([ids]), n_loops)[0, -1]
        ids.append(int(logits.argmax()))
        if ids[-1] == EOS_ID:
            break
    return ids[len(prompt) :]
