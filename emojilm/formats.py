"""Which weight format serves a model: the fastest one here that agrees with float32.

float32 is exact; bfloat16 and int8 read 2x and 4x fewer bytes per weight, and
decoding is memory-bound, so they decode faster where this machine has a fast
kernel for them (`kernels`). Which kernel wins differs from CPU to CPU, so the
speed is measured here, at load, per format: the products a served step runs over
a random matrix of the model's largest shape, for one row (a lone visitor) and
for a full batch (emojilm.engine's MAX_ROWS visitors), their times summed. The
batch counts because kernels differ there most: on the AVX-512 kernels int8's
grows with the rows while bf16's barely does (docs/benchmarks.md, "Kernel trials").
Agreement is checked on the model itself: teacher-forced next-byte predictions
on the probe's known pairs (prompt and answer) and on the given texts (the
page's examples), one forward per model. A
format agrees when it picks float32's top byte wherever float32 picks it by a
margin of at least SURE_MARGIN nats (closer calls are rounding's to decide).
The verdict is cached beside the converted weights, so it is made once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from emojilm import kernels
from emojilm.config import ModelArgs
from emojilm.engine import MAX_ROWS
from emojilm.model import LoopedTransformer
from emojilm.prompt import KNOWN_PAIRS, format_prompt
from emojilm.tokenizer import ByteTokenizer

CANDIDATES = ("int8", "bfloat16")  # the formats that read fewer bytes than float32 on CPU
# A candidate must take at most this share of float32's time to count as faster: on a small model
# (the bundled one's matrices sit in cache) the formats tie within timing noise, and a tie keeps float32.
CLEARLY_FASTER = 0.8
TIMED_ROWS = (1, MAX_ROWS)  # the row counts whose products are timed (a lone visitor, a full batch)
SURE_MARGIN = 0.5  # nats between float32's top two bytes for a prediction to count in the check
# How far a format's logits may stray from float32's, as a share of the spread of float32's logits
# (largest minus smallest at a position, the largest over positions). Measured on the bundled model:
# bfloat16 0.009, int8 0.021; the tests hold every format to this on tiny random models too.
LOGIT_TOLERANCE = {"float32": 0.0, "bfloat16": 0.03, "int8": 0.06}


@dataclass
class FormatCheck:
    """One candidate format against float32 on the check's predictions."""

    weight_format: str
    predictions: int  # positions float32 is sure about (margin >= SURE_MARGIN)
    disagreements: int  # of those, where the candidate's top byte differs
    top1_agreement: float  # over every position, sure or not
    max_logit_delta: float

    @property
    def agrees(self) -> bool:
        return self.predictions > 0 and self.disagreements == 0

    def describe(self) -> str:
        verdict = "agrees" if self.agrees else "disagrees"
        return (f"{self.weight_format} {verdict} with float32 on {self.predictions - self.disagreements}/"
                f"{self.predictions} sure next-byte predictions (top byte same at {self.top1_agreement:.1%} of all; "
                f"max |Δlogit| {self.max_logit_delta:.3g})")  # fmt: skip


@dataclass
class FormatChoice:
    """The format a model is served in, and the evidence: product seconds per format, checks."""

    weight_format: str
    seconds: dict[str, float] = field(default_factory=dict)
    checks: list[FormatCheck] = field(default_factory=list)
    rows: tuple[int, ...] = TIMED_ROWS  # the row counts whose products `seconds` sums

    def describe(self) -> str:
        speed = ", ".join(f"{name} {1e3 * s:.2f} ms" for name, s in self.seconds.items())
        checks = "; ".join(check.describe() for check in self.checks) or "no faster format to check"
        rows = " and ".join(str(r) for r in self.rows)
        return f"{self.weight_format} chosen (products of {rows} rows here: {speed}); {checks}"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> FormatChoice:
        checks = [FormatCheck(**c) for c in data["checks"]]
        rows = tuple(data["rows"])  # a verdict timed otherwise (older code: one row) is made again
        if rows != TIMED_ROWS:
            raise ValueError(f"a verdict timed on {rows} rows")
        return cls(data["weight_format"], dict(data["seconds"]), checks, rows)


def product_seconds(args: ModelArgs, device: torch.device, repeats: int = 5) -> dict[str, float]:
    """Seconds for the products of TIMED_ROWS rows (summed) over a random [2 × hidden, dim] matrix (a
    block's largest, w1|w3) in each format, through the kernel it would run through here; fastest of repeats."""
    weight = 0.02 * torch.randn(2 * args.hidden_dim, args.dim, device=device)  # a trained model's scale
    products = {
        "float32": kernels.DenseProduct(weight.t().contiguous()),
        "bfloat16": kernels.bfloat16_product(weight.bfloat16()),
        "int8": kernels.int8_product(*kernels.quantize_rows(weight)),
    }
    seconds = {}
    with torch.inference_mode():
        for name, product in products.items():
            seconds[name] = 0.0
            for rows in TIMED_ROWS:
                x = torch.randn(rows, args.dim, device=device)
                best = float("inf")
                for _ in range(repeats + 1):  # the first call may build the kernel
                    started = time.perf_counter()
                    product(x)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    best = min(best, time.perf_counter() - started)
                seconds[name] += best
    return seconds


def check_sequences(template: str, texts: Sequence[str]) -> list[list[int]]:
    """Token ids the check predicts along: each known pair's prompt and answer, each text's prompt."""
    tok = ByteTokenizer()
    pairs = [tok.encode(format_prompt(text, template), bos=True) + tok.encode(answer, eos=True)
             for text, answer in KNOWN_PAIRS]  # fmt: skip
    return pairs + [tok.encode(format_prompt(text, template), bos=True) for text in texts]


@torch.inference_mode()
def compare(reference: LoopedTransformer, candidate: LoopedTransformer, sequences: list[list[int]]) -> FormatCheck:
    """The candidate's next-byte predictions against the float32 reference's, one padded forward each."""
    width = max(len(ids) for ids in sequences)
    tokens = torch.full((len(sequences), width), ByteTokenizer.eos_id, dtype=torch.long)
    real = torch.zeros(len(sequences), width, dtype=torch.bool)
    for row, ids in enumerate(sequences):
        tokens[row, : len(ids)] = torch.tensor(ids)
        real[row, : len(ids)] = True
    device = reference.tok_embeddings.weight.device
    ours, theirs = (m(tokens.to(device)).float()[real.to(device)] for m in (reference, candidate))
    top = ours.topk(2, dim=-1)
    sure = top.values[:, 0] - top.values[:, 1] >= SURE_MARGIN
    same = theirs.argmax(-1) == top.indices[:, 0]
    return FormatCheck(
        weight_format=candidate.weight_format,
        predictions=int(sure.sum()),
        disagreements=int((sure & ~same).sum()),
        top1_agreement=float(same.float().mean()),
        max_logit_delta=float((ours - theirs).abs().max()),
    )


def candidates_by_speed(seconds: dict[str, float]) -> list[str]:
    """The candidate formats clearly faster than float32 here, fastest first."""
    faster = (f for f in CANDIDATES if seconds[f] <= CLEARLY_FASTER * seconds["float32"])
    return sorted(faster, key=seconds.__getitem__)
