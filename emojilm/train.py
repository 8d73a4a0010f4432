"""Train a LoopedTransformer on text→emoji pairs and write a lingua-layout checkpoint.

    python -m emojilm.train --out runs/demo                     # built-in corpus
    python -m emojilm.train --out runs/demo --data pairs.csv    # any text/emoji table
    python -m emojilm.train --out runs/demo --resume            # continue from runs/demo

Each step runs all loops once and takes the loss at the last loop and at one
random earlier loop, so early loops learn to answer too (the loop slider then
shows real refinement). The loss counts only the answer bytes and EOS.
The checkpoint records its loop mode and prompt template in params.json, so
nothing has to be guessed when it is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from emojilm.checkpoint import CONSOLIDATED, write_checkpoint
from emojilm.config import ModelArgs, ffn_hidden_dim
from emojilm.model import LoopedTransformer
from emojilm.prompt import DEFAULT_TEMPLATE, format_prompt, resolve_template
from emojilm.tokenizer import ByteTokenizer


@dataclass
class TrainConfig:
    out: str = "runs/demo"
    data: str = "builtin"  # "builtin" (emojilm.corpus) or a table with text/emoji columns
    seed: int = 0
    dim: int = 256
    n_layers: int = 3
    n_heads: int = 4
    n_loops: int = 6
    loop_mode: str = "inject_embeddings"
    template: str = DEFAULT_TEMPLATE
    max_seqlen: int = 256
    steps: int = 10000
    time_limit: float = 0.0  # minutes; when set, training ends by then (the LR schedule follows the clock)
    batch_size: int = 256
    lr: float = 3e-3
    warmup: int = 300
    weight_decay: float = 0.1
    early_loop_weight: float = 0.5  # weight of the loss at a random earlier loop
    eval_every: int = 1000
    eval_size: int = 512
    device: str = "auto"
    bf16: bool = False  # bf16 autocast on CPU too (always on with CUDA); CPUs with AMX train ~1.4x faster
    resume: bool = False

    def model_args(self) -> ModelArgs:
        return ModelArgs(
            dim=self.dim,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_kv_heads=self.n_heads,
            head_dim=self.dim // self.n_heads,
            hidden_dim=ffn_hidden_dim(self.dim, 64, None),
            max_seqlen=self.max_seqlen,
            n_loops=self.n_loops,
            loop_mode=self.loop_mode,
        )


def lingua_params(cfg: TrainConfig, step: int, extra: dict | None = None) -> dict:
    """The whole config as lingua lays out params.json, plus our own "emojilm" section."""
    return {
        "name": Path(cfg.out).name,
        "steps": cfg.steps,
        "seed": cfg.seed,
        "model": cfg.model_args().to_lingua(),
        "data": {"tokenizer": {"name": "bytes"}, "source": cfg.data},
        "optim": {"lr": cfg.lr, "warmup": cfg.warmup, "weight_decay": cfg.weight_decay},
        "emojilm": {"prompt_template": resolve_template(cfg.template), "trained_steps": step, **(extra or {})},
        "train_config": dataclasses.asdict(cfg),
    }


def load_training_pairs(cfg: TrainConfig) -> pd.DataFrame:
    from emojilm.corpus import build_corpus, load_pairs

    pairs = build_corpus(seed=cfg.seed) if cfg.data == "builtin" else load_pairs(cfg.data)
    if "split" not in pairs:
        pairs = pairs.assign(split="train")
    return pairs


def _corpus_recipe(cfg: TrainConfig) -> dict:
    """{"corpus": how the corpus CLI built cfg.data} for params.json, when it recorded that."""
    from emojilm.corpus import corpus_recipe

    recipe = corpus_recipe(cfg.data)
    return {"corpus": recipe} if recipe else {}


def encode_pairs(pairs: pd.DataFrame, template: str, max_len: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids + EOS) for each pair that fits in max_len."""
    tok = ByteTokenizer()
    encoded = []
    for text, answer in zip(pairs["text"], pairs["emoji"], strict=True):
        prompt = tok.encode(format_prompt(text, template), bos=True)
        target = tok.encode(answer, eos=True)
        if len(prompt) + len(target) <= max_len:
            encoded.append((prompt, target))
    return encoded


def _length(example: tuple[list[int], list[int]]) -> int:
    return len(example[0]) + len(example[1])


def neighbours(examples: list, batch_size: int, rng: random.Random) -> list:
    """A random run of batch_size consecutive examples (the list is sorted by length)."""
    start = rng.randrange(max(1, len(examples) - batch_size + 1))
    return examples[start : start + batch_size]


def make_batch(examples: list[tuple[list[int], list[int]]], device: torch.device):
    """Tokens [B, T] padded with EOS, and targets [B, T] with -100 outside the answers."""
    width = max(len(p) + len(a) for p, a in examples)
    tokens = torch.full((len(examples), width), ByteTokenizer.eos_id, dtype=torch.long)
    targets = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, (prompt, answer) in enumerate(examples):
        seq = prompt + answer
        tokens[i, : len(seq)] = torch.tensor(seq)
        # position t predicts token t+1: the answer starts after the last prompt byte
        targets[i, len(prompt) - 1 : len(seq) - 1] = torch.tensor(answer)
    return tokens.to(device), targets.to(device)


def loss_at_loops(model: LoopedTransformer, tokens, targets, early_loop: int, early_weight: float):
    """Cross-entropy at the last loop, plus early_weight × that at loop early_loop (1-based)."""
    losses = {}
    for loop, h in enumerate(model.loop_states(tokens), start=1):
        if loop in (early_loop, model.args.n_loops):
            logits = model.readout(h).float()
            losses[loop] = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    final = losses[model.args.n_loops]
    return final + early_weight * losses[early_loop], final


def lr_at(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to 10% as progress (0..1) goes to 1."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def progress_of(step: int, elapsed: float, cfg: TrainConfig) -> float:
    by_steps = step / cfg.steps
    return max(by_steps, elapsed / (60 * cfg.time_limit)) if cfg.time_limit else by_steps


def make_optimizer(model: LoopedTransformer, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=False)


def train(cfg: TrainConfig) -> Path:
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    pairs = load_training_pairs(cfg)
    recipe = _corpus_recipe(cfg)
    # Sorted by length, so that a batch of neighbours wastes little on padding.
    train_set = sorted(encode_pairs(pairs[pairs["split"] == "train"], cfg.template, cfg.max_seqlen), key=_length)
    heldout = pairs[pairs["split"] == "heldout"]
    print(f"{len(train_set)} training pairs, {len(heldout)} held out, device {device}")

    model = LoopedTransformer(cfg.model_args()).to(device)
    _init_weights(model)
    optimizer = make_optimizer(model, cfg)
    start, seconds_before, history = 0, 0.0, []
    if cfg.resume and (out / CONSOLIDATED).is_file():
        saved = torch.load(out / CONSOLIDATED, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optim"])
        done = json.loads((out / "params.json").read_text())["emojilm"]
        start, seconds_before, history = done["trained_steps"], done["train_seconds"], done["history"]
        print(f"resumed from {out} at step {start}")
    rng = random.Random(cfg.seed + start)  # a resumed run must not replay the batches it has already seen
    print(f"{model.num_params() / 1e6:.2f}M parameters, {cfg.n_layers} layers × {cfg.n_loops} loops")

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" or cfg.bf16)
    started = time.time()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, mininterval=2.0)
    for step in bar:
        tokens, targets = make_batch(neighbours(train_set, cfg.batch_size, rng), device)
        early = rng.randint(1, cfg.n_loops)
        progress = progress_of(step, time.time() - started, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, progress, cfg)
        with autocast:
            loss, final = loss_at_loops(model, tokens, targets, early, cfg.early_loop_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{final.item():.3f}")
        last = step + 1 == cfg.steps or progress >= 1.0
        if (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or last:
            report = _evaluate(model, cfg, heldout, device)
            history.append({"step": step + 1, "loss": final.item(), **report})
            tqdm.write(f"step {step + 1}: loss {final.item():.4f} held-out hit by loops {report}")
            extra = {"train_seconds": round(seconds_before + time.time() - started, 1), "history": history, **recipe}
            write_checkpoint(out, model, lingua_params(cfg, step + 1, extra), optim_state=optimizer.state_dict())
        if last:
            break
    return out


def _init_weights(model: LoopedTransformer) -> None:
    # Small init, scaled down for the output projections (as lingua's init_std_factor does with depth).
    depth = model.args.n_layers * model.args.n_loops
    for name, p in model.named_parameters():
        if p.dim() == 2:
            std = 0.02 / math.sqrt(2 * depth) if name.endswith(("wo.weight", "w2.weight")) else 0.02
            torch.nn.init.trunc_normal_(p, std=std, a=-3 * std, b=3 * std)


def _evaluate(model: LoopedTransformer, cfg: TrainConfig, heldout: pd.DataFrame, device) -> dict[str, float]:
    from emojilm.evaluate import accuracy_by_loops
    from emojilm.lm import EmojiLM, ModelInfo

    if heldout.empty:
        return {}
    sample = heldout.sample(min(cfg.eval_size, len(heldout)), random_state=cfg.seed)
    info = ModelInfo("training", cfg.out, None, "", model.num_params(), str(device), "float32",
                     cfg.loop_mode, "recorded", cfg.template, "recorded")  # fmt: skip
    model.eval()
    table = accuracy_by_loops(EmojiLM(model, cfg.template, info), sample)
    model.train()
    return {f"k{int(r.loops)}": round(r.hit, 3) for r in table.itertuples()}


def parse_args(argv=None) -> TrainConfig:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action="store_true")
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            parser.add_argument(flag, type=kind, default=f.default)
    return TrainConfig(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    train(parse_args())
