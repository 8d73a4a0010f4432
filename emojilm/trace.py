"""The refinement trace: how each loop's answer compares with the final one.

For one request we translate once, then:

1. run the answer through the model once more with every loop read out
   (teacher forcing), giving each loop's probability of every answer byte;
2. for each answer character, branch from its position: every loop's top
   first bytes, each completed greedily by that loop, give the loop's own top
   characters and their probabilities (rows = loops × alternatives, one batch,
   reusing the teacher-forced KV cache for the shared prefix);
3. decode the whole answer with 1, 2, ... n loops in one batch sharing one
   prompt prefill (generation.decode_steps).

Characters are what a reader sees as one emoji (tokenizer.cluster_spans).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace

import pandas as pd
import torch

from emojilm.generation import Generation, answers_by_loops, exit_states, stream
from emojilm.sampling import SamplingParams
from emojilm.tokenizer import char_spans, cluster_spans

END = "⏹"  # how the end of the answer (EOS) is shown among alternatives


@dataclass
class Trace:
    output: str
    generation: Generation
    by_loop: pd.DataFrame  # one row per (loop, output character)
    per_loop_outputs: pd.DataFrame  # one row per loop count k: what the model answers with k loops
    summary: pd.DataFrame  # one row per loop: means over the characters


def utf8_length(lead: int) -> int:
    """Bytes in the character a lead byte starts (1 for ASCII, specials and stray bytes)."""
    if 0xC0 <= lead < 0xE0:
        return 2
    if 0xE0 <= lead < 0xF0:
        return 3
    if 0xF0 <= lead < 0xF8:
        return 4
    return 1


def _show(ids: list[int]) -> str:
    if ids and ids[0] >= 256:
        return END
    # A branch completed greedily may pick EOS mid-character: show what it wrote before that.
    end = next((n for n, i in enumerate(ids) if i >= 256), len(ids))
    return bytes(ids[:end]).decode("utf-8", "replace")


@torch.no_grad()
def run_trace(
    lm,
    text: str,
    params: SamplingParams,
    n_loops: int | None = None,
    max_new_tokens: int = 64,
    adaptive_threshold: float = 0.0,
    alternatives: int = 5,
    generation: Generation | None = None,
) -> Trace:
    """Trace one request. `generation`, if given, is the finished translation of this
    request (same text and settings, seeded), reused instead of translating again."""
    model = lm.model
    n_loops = model.check_loops(n_loops)
    if params.seed is None:  # one seed for the answer and every loop count's answer
        if generation is not None and not params.greedy:
            raise ValueError("reusing a sampled answer needs the seed it was sampled with")
        params = replace(params, seed=secrets.randbelow(2**31))  # leaves the global RNGs alone
    if generation is None or not generation.done:
        *_, generation = stream(lm, text, params, n_loops, max_new_tokens, adaptive_threshold)
    prompt, answer = generation.prompt_ids, generation.token_ids
    chars = cluster_spans(char_spans(answer))
    text_offsets = [0]  # where each character starts in generation.text (for its loops used)
    for char, _, _ in chars:
        text_offsets.append(text_offsets[-1] + len(char))

    # 1. Teacher forcing: every loop's log-probabilities at every answer position.
    tokens = torch.tensor([prompt + answer], device=lm.device)
    cache = model.new_cache(n_loops, 1, tokens.shape[1])  # branches copy its prefix into their own
    logp = model.loop_logits(tokens, n_loops, cache=cache)[:, 0].float().log_softmax(-1)  # [loops, T, V]
    first = len(prompt) - 1  # the position whose output is answer byte 0
    answer_t = torch.tensor(answer, device=lm.device)
    byte_logp = logp[:, first : first + len(answer)].gather(-1, answer_t[None, :, None].expand(n_loops, -1, 1))[..., 0]
    probs = logp.exp()
    entropy = -(probs * logp).sum(-1)  # [loops, T]
    kl_to_final = (probs[-1:] * (logp[-1:] - logp)).sum(-1)

    rows = []
    for c, (char, start, end) in enumerate(chars):
        span = slice(first + start, first + end)
        alts = _alternatives(model, cache, logp, first + start + 1, n_loops, alternatives)
        for k in range(n_loops):
            top_char, p_top = alts[k][0]
            rows.append(
                {
                    "loop": k + 1,
                    "position": c,
                    "char": char,
                    "p_final_char": math.exp(float(byte_logp[k, start:end].sum())),
                    "top_char": top_char,
                    "p_top": p_top,
                    "entropy": float(entropy[k, span].sum()),
                    "kl_to_final": float(kl_to_final[k, span].sum()),
                    "top5": " · ".join(f"{ch} {p:.2f}" for ch, p in alts[k]),
                    "loops_used": max(generation.loops_per_char[text_offsets[c] : text_offsets[c + 1]]),
                }
            )
    by_loop = pd.DataFrame(rows, columns=BY_LOOP_COLUMNS)
    per_loop = per_loop_outputs(lm, prompt, params, n_loops, max_new_tokens, generation.text)
    return Trace(generation.text, generation, by_loop, per_loop, summarize(by_loop, per_loop, n_loops))


BY_LOOP_COLUMNS = [
    "loop", "position", "char", "p_final_char", "top_char", "p_top", "entropy", "kl_to_final", "top5", "loops_used",
]  # fmt: skip


def _alternatives(model, cache, logp, position: int, n_loops: int, width: int) -> list[list[tuple[str, float]]]:
    """Each loop's top characters at `position` (the first byte of an answer character).

    Branch on each loop's `width` most likely first bytes and complete each
    branch greedily with that same loop; a character's probability is the
    product of its bytes' probabilities. Returns, per loop, (char, p) best first.
    """
    first_logp, first_ids = logp[:, position - 1].topk(width, dim=-1)  # [loops, width]
    branches = [[[int(first_ids[k, j])] for j in range(width)] for k in range(n_loops)]
    branch_logp = first_logp.clone()
    need = max(utf8_length(b[0]) for row in branches for b in row) - 1
    need = min(need, model.args.max_seqlen - position)  # at the end of the context a branch stays unfinished
    if need:
        n_rows = n_loops * width
        fork = cache.branch(position, n_rows, need)
        exit_index = torch.arange(n_loops, device=logp.device).repeat_interleave(width)
        ids = first_ids.flatten()
        for step in range(need):
            hidden = exit_states(model, ids, exit_index, fork, position + step)
            step_logp = model.readout(hidden).float().log_softmax(-1)
            best_logp, ids = step_logp.max(-1)
            for r in range(n_rows):
                k, j = divmod(r, width)
                branch = branches[k][j]
                if len(branch) < utf8_length(branch[0]):
                    branch.append(int(ids[r]))
                    branch_logp[k, j] += best_logp[r]
    result = []
    for k in range(n_loops):
        ranked = sorted(zip(branches[k], branch_logp[k].tolist(), strict=True), key=lambda bp: -bp[1])
        result.append([(_show(b), math.exp(lp)) for b, lp in ranked])
    return result


def per_loop_outputs(lm, prompt: list[int], params: SamplingParams, n_loops: int, max_new_tokens: int,
                     final: str) -> pd.DataFrame:  # fmt: skip
    """What the model answers with k loops, k = 1..n, decoded in one batch."""
    prompts = torch.tensor([prompt], device=lm.device)
    [outputs] = answers_by_loops(lm, prompts, range(1, n_loops + 1), params, max_new_tokens)
    table = pd.DataFrame({"loops": range(1, n_loops + 1), "output": outputs})
    table["same_as_final"] = table["output"] == final
    return table


def summarize(by_loop: pd.DataFrame, per_loop: pd.DataFrame, n_loops: int) -> pd.DataFrame:
    """Per loop: mean probability of the final answer's characters, entropy, KL to final."""
    means = by_loop.groupby("loop")[["p_final_char", "entropy", "kl_to_final"]].mean()
    means = means.reindex(range(1, n_loops + 1)).rename_axis("loop").reset_index()
    means = means.rename(columns={"p_final_char": "mean_p_final", "entropy": "mean_entropy", "kl_to_final": "mean_kl"})
    means["answer"] = per_loop["output"].to_numpy()
    means["same_as_final"] = per_loop["same_as_final"].to_numpy()
    exits = by_loop.drop_duplicates("position")["loops_used"]
    means["chars_exiting_here"] = [int((exits == k).sum()) for k in means["loop"]]
    return means
