"""Train a LoopedTransformer on text→emoji pairs and write a lingua-layout checkpoint.

    python -m emojilm.train --out runs/demo                     # built-in corpus
    python -m emojilm.train --out runs/demo --data pairs.csv    # any text/emoji table
    python -m emojilm.train --out runs/demo --resume            # continue from runs/demo
    python -m emojilm.train --out runs/wide --dim 192 --n-heads 6 --grow-from runs/demo  # widen, go on
    torchrun --nproc-per-node 2 -m emojilm.train --out runs/demo  # data parallel: 2 processes (or GPUs)

Each step runs all loops once and takes the loss at the last loop and at one
random earlier loop, so early loops learn to answer too (the loop slider then
shows real refinement). The loss counts only the answer bytes and EOS.
The checkpoint records its loop mode and prompt template in params.json, so
nothing has to be guessed when it is loaded.

Under torchrun, DistributedDataParallel trains one model (gloo on CPU, NCCL on
GPUs, one GPU per process). Every rank draws the same global batch of
--batch-size pairs and trains on its own contiguous part of it. The loss is the
mean over the global batch's answer bytes, as in one process (not the mean of
the ranks' means, which would count a byte more where its rank holds fewer):
a rank scales its mean by its share of those bytes, times the world size that
DDP's gradient averaging divides by. Rank 0 alone prints, evaluates and writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from emojilm.checkpoint import CONSOLIDATED, write_checkpoint
from emojilm.config import ModelArgs, args_from_params, ffn_hidden_dim
from emojilm.grow import check_widening, grown_eps, read_checkpoint, widen_state
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
    ffn_dim_multiplier: float = 1.0  # scales lingua's feed-forward width (2/3 of 4·dim, rounded up to 64)
    norm_eps: float = 1e-5
    grow_from: str = ""  # a narrower checkpoint to start from, widened to --dim (emojilm.grow; sets --norm-eps)
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
    bf16: bool = False  # bf16 autocast on CPU too (always on with CUDA): faster where the CPU has AMX
    compile: bool = False  # torch.compile the training step (pays off on GPUs)
    resume: bool = False

    def model_args(self) -> ModelArgs:
        return ModelArgs(
            dim=self.dim,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_kv_heads=self.n_heads,
            head_dim=self.dim // self.n_heads,
            hidden_dim=ffn_hidden_dim(self.dim, 64, self.ffn_dim_multiplier),
            norm_eps=self.norm_eps,
            max_seqlen=self.max_seqlen,
            n_loops=self.n_loops,
            loop_mode=self.loop_mode,
        )


def lingua_params(cfg: TrainConfig, step: int, extra: dict | None = None, world_size: int = 1) -> dict:
    """The whole config as lingua lays out params.json, plus our own "emojilm" section."""
    return {
        "name": Path(cfg.out).name,
        "steps": cfg.steps,
        "seed": cfg.seed,
        "model": cfg.model_args().to_lingua(),
        # lingua's data.batch_size is per rank; the global batch is that times dp_replicate
        "data": {"tokenizer": {"name": "bytes"}, "source": cfg.data, "batch_size": cfg.batch_size // world_size},
        "distributed": {"dp_replicate": world_size, "dp_shard": 1, "compile": cfg.compile},
        "optim": {"lr": cfg.lr, "warmup": cfg.warmup, "weight_decay": cfg.weight_decay},
        "emojilm": {"prompt_template": resolve_template(cfg.template), "trained_steps": step, **(extra or {})},
        "train_config": dataclasses.asdict(cfg),
    }


@dataclass(frozen=True)
class World:
    """This process's place among those torchrun started: one process of one when run plainly."""

    rank: int
    size: int
    device: torch.device

    @classmethod
    def join(cls, cfg: TrainConfig) -> World:
        """Read torchrun's environment, pick this rank's device and join the process group."""
        env = os.environ  # torchrun sets these in every process it starts
        rank, size, local_rank = (int(env.get(name, default)) for name, default in
                                  (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))  # fmt: skip
        if cfg.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {cfg.batch_size}")
        if cfg.batch_size % size:
            raise ValueError(f"--batch-size {cfg.batch_size} is the global batch, split evenly among the {size} "
                             f"processes: make it a multiple of {size}")  # fmt: skip
        device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
        if size == 1:
            return cls(0, 1, device)
        if device.type == "cuda":
            if device.index is not None:
                raise ValueError(f"--device {cfg.device}: under torchrun each process takes the GPU numbered by "
                                 "its LOCAL_RANK; pass --device cuda")  # fmt: skip
            if local_rank >= (gpus := torch.cuda.device_count()):
                raise ValueError(f"LOCAL_RANK {local_rank} has no GPU of its own: this node has {gpus}; "
                                 "start at most that many processes per node")  # fmt: skip
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        # DDP imports torch._dynamo, and that import keeps references to a process group that exists already:
        # the group would outlive leave(), and its gloo threads would now and then crash the exit (SIGABRT).
        importlib.import_module("torch._dynamo")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(rank, size, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def say(self, message: str) -> None:
        if self.main:
            print(message)

    def wrap(self, objective: nn.Module) -> nn.Module:
        """Under DDP, which averages the gradients over the ranks in backward; as it is when alone."""
        if self.size == 1:
            return objective
        return DistributedDataParallel(objective, device_ids=[self.device] if self.device.type == "cuda" else None)

    # The methods below are collectives: every rank calls them at the same point.

    def batch_mean(self, rank_mean: torch.Tensor, share: float) -> float:
        """The global batch's mean from this rank's mean over its part (share as in the training step)."""
        total = rank_mean.detach() * share
        if self.size > 1:
            dist.all_reduce(total)
        return total.item() / self.size

    def from_rank0(self, value: float) -> float:
        """Rank 0's value, on every rank."""
        if self.size == 1:
            return value
        held = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(held, src=0)
        return held.item()

    def check_same(self, what: str, value: tuple) -> None:
        """Fail on every rank, with each rank's value, unless all ranks hold the same value."""
        if self.size == 1:
            return
        values: list = [None] * self.size
        dist.all_gather_object(values, value)
        if len(set(values)) > 1:
            raise ValueError(f"the ranks disagree on {what}: {values} (by rank); every node must read the same "
                             "--data, and when resuming the same --out folder (a shared filesystem)")  # fmt: skip

    def leave(self) -> None:
        """After the last step, and after DDP is gone: wait for rank 0 (it may still be evaluating and
        writing), then end the process group.

        DDP must go first: its reducer, left holding the group's last reference, would end the group
        while holding the GIL, and gloo's threads, which need the GIL to drop the tensors of finished
        collectives, would never finish (a deadlock). The group's own teardown lets go of the GIL.
        """
        if self.size > 1:
            dist.barrier()
            dist.destroy_process_group()


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


def shard(batch: list, rank: int, world_size: int) -> list:
    """Rank's contiguous part of a global batch: the parts cover it once, in order, sizes within one row."""
    size, extra = divmod(len(batch), world_size)
    begin = rank * size + min(rank, extra)
    return batch[begin : begin + size + (rank < extra)]


def answer_bytes(examples: list[tuple[list[int], list[int]]]) -> int:
    """How many target positions the loss averages over (answer bytes and EOS)."""
    return sum(len(answer) for _, answer in examples)


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


class TrainingLoss(nn.Module):
    """loss_at_loops as a module's forward: DDP averages gradients only for the module whose forward it runs."""

    def __init__(self, model: LoopedTransformer, early_weight: float):
        super().__init__()
        self.model, self.early_weight = model, early_weight

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor, early_loop: int):
        return loss_at_loops(self.model, tokens, targets, early_loop, self.early_weight)


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


class Speedometer:
    """Training bytes per second after the first step (startup and compilation left out), evaluations excluded."""

    def __init__(self, device: torch.device):
        self.device, self.bytes, self.seconds, self.since = device, 0, 0.0, None

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # count the GPU's work, not just its launch
        return time.perf_counter()

    def run(self) -> None:
        self.since = self._now()

    def pause(self) -> None:
        if self.since is not None:
            self.seconds, self.since = self.seconds + self._now() - self.since, None

    def count(self, batch: list) -> None:
        if self.since is not None:
            self.bytes += sum(map(_length, batch))

    def figures(self) -> dict:
        return {"train_bytes_per_second": round(self.bytes / self.seconds)} if self.seconds else {}


def train(cfg: TrainConfig) -> Path:
    world = World.join(cfg)
    device = world.device
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    resuming = cfg.resume and (out / CONSOLIDATED).is_file()
    narrow = None
    if cfg.grow_from:
        narrow = read_checkpoint(cfg.grow_from)
        cfg = dataclasses.replace(cfg, norm_eps=grown_eps(narrow.args, cfg.dim))
    pairs = load_training_pairs(cfg)
    recipe = _corpus_recipe(cfg)
    # Sorted by length, so that a batch of neighbours wastes little on padding.
    train_set = sorted(encode_pairs(pairs[pairs["split"] == "train"], cfg.template, cfg.max_seqlen), key=_length)
    heldout = pairs[pairs["split"] == "heldout"]
    if len(train_set) < world.size:
        raise ValueError(f"{len(train_set)} training pairs fit in --max-seqlen {cfg.max_seqlen}: too few for "
                         f"{world.size} process(es)")  # fmt: skip
    processes = f", {world.size} processes" if world.size > 1 else ""
    world.say(f"{len(train_set)} training pairs, {len(heldout)} held out, device {device}{processes}")

    model = LoopedTransformer(cfg.model_args()).to(device)
    _init_weights(model)
    if narrow is not None and not resuming:
        check_widening(narrow.args, model.args)
        model.load_state_dict(widen_state(narrow.state, narrow.args, model.state_dict()))
        world.say(f"widened {cfg.grow_from} ({narrow.args.dim} → {cfg.dim} channels), computing the same logits")
    optimizer = make_optimizer(model, cfg)
    start, seconds_before, history = 0, 0.0, []
    if resuming:
        start, seconds_before, history = _resume(out, model, optimizer, device)
        world.say(f"resumed from {out} at step {start}")
    world.check_same("(step to start from, training pairs, their bytes)",
                     (start, len(train_set), sum(map(_length, train_set))))  # fmt: skip
    # Every rank draws the same global batches: the order depends on neither the world size nor the rank, and
    # a resumed run must not replay the batches it has already seen.
    rng = random.Random(cfg.seed + start)
    world.say(f"{model.num_params() / 1e6:.2f}M parameters, {cfg.n_layers} layers × {cfg.n_loops} loops")

    if cfg.compile:  # block by block: one compiled block serves every layer and loop, whichever loops the loss reads
        for block in model.layers:
            block.compile()
    objective = world.wrap(TrainingLoss(model, cfg.early_loop_weight))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" or cfg.bf16)
    started = time.time()
    speed = Speedometer(device)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, mininterval=2.0, disable=not world.main)
    for step in bar:
        batch = neighbours(train_set, cfg.batch_size, rng)
        part = shard(batch, world.rank, world.size)
        tokens, targets = make_batch(part, device)
        # Scaling this rank's mean loss so that DDP's average of the gradients is the global per-byte mean's:
        # exactly 1.0 in one process (see the module docstring).
        share = world.size * answer_bytes(part) / answer_bytes(batch)
        early = rng.randint(1, cfg.n_loops)
        elapsed = time.time() - started
        if cfg.time_limit:  # the schedule and the last step follow one clock on every rank
            elapsed = world.from_rank0(elapsed)
        progress = progress_of(step, elapsed, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, progress, cfg)
        with autocast:
            loss, final = objective(tokens, targets, early)
        optimizer.zero_grad(set_to_none=True)
        (loss * share).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        speed.count(batch)
        if step == start:
            speed.run()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{world.batch_mean(final, share):.3f}")
        last = step + 1 == cfg.steps or progress >= 1.0
        if (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or last:
            loss_now = world.batch_mean(final, share)
            if world.main:
                speed.pause()
                report = _evaluate(model, cfg, heldout, device)
                history.append({"step": step + 1, "loss": loss_now, **report})
                tqdm.write(f"step {step + 1}: loss {loss_now:.4f} held-out hit by loops {report}")
                extra = {"train_seconds": round(seconds_before + time.time() - started, 1), "history": history,
                         **speed.figures(), **recipe}  # fmt: skip
                params = lingua_params(cfg, step + 1, extra, world.size)
                write_checkpoint(out, model, params, optim_state=optimizer.state_dict())
                speed.run()
        if last:
            break
    del objective  # DDP before the process group: see World.leave
    world.leave()
    return out


def _resume(out: Path, model: LoopedTransformer, optimizer, device) -> tuple[int, float, list]:
    """Load the weights and optimizer state saved in out: (steps done, seconds spent, history)."""
    params = json.loads((out / "params.json").read_text())
    differ = args_from_params(params).differences(model.args)
    if differ:  # saved → asked
        raise ValueError(f"{out} holds another model ({', '.join(differ)}): resume with the options that made it")
    saved = torch.load(out / CONSOLIDATED, map_location=device, weights_only=True)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optim"])
    done = params["emojilm"]
    return done["trained_steps"], done["train_seconds"], done["history"]


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
    with torch.compiler.set_stance("force_eager"):  # --compile's blocks are compiled for training, not decoding
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


@record  # under torchrun, a rank's unexpected error is reported with its traceback
def main(argv=None) -> None:
    try:
        train(parse_args(argv))
    except ValueError as problem:  # bad options or data: one line, from each rank that found it
        rank = f" (rank {os.environ['RANK']})" if "RANK" in os.environ else ""
        raise SystemExit(f"emojilm.train{rank}: {problem}") from None


if __name__ == "__main__":
    main()
