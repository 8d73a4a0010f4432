"""`emojilm.load`: a source in, a ready-to-use EmojiLM out.

An EmojiLM bundles the model, the tokenizer, the prompt template and a record
of where everything came from (shown in the app's model panel).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from emojilm import checkpoint, generation
from emojilm.config import LOOP_MODES, args_from_params, read_params
from emojilm.model import LoopedTransformer
from emojilm.prompt import DEFAULT_TEMPLATE, format_prompt, resolve_template, template_name
from emojilm.sampling import SamplingParams
from emojilm.tokenizer import ByteTokenizer
from emojilm.trace import Trace, run_trace

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelInfo:
    source: str
    folder: str
    revision: str | None
    weights: str  # which file the weights came from
    n_params: int
    device: str
    dtype: str
    loop_mode: str
    mode_source: str  # "config", "recorded", "probe", "default" or "override" (see `load`)
    template: str
    template_source: str
    probe_note: str = ""  # what the probe found, when it ran: winners, margins, why a default stayed
    note: str = ""  # how the files were found, when it matters: a cached Hub copy used while offline


class EmojiLM:
    def __init__(self, model: LoopedTransformer, template: str, info: ModelInfo) -> None:
        self.model = model
        self.tokenizer = ByteTokenizer()
        self.template = resolve_template(template)
        self.info = info

    @property
    def n_loops(self) -> int:
        """The loop count the model was trained with (the default at call time)."""
        return self.model.args.n_loops

    @property
    def max_loops(self) -> int:
        return self.model.args.max_loops

    @property
    def device(self) -> torch.device:
        return self.model.tok_embeddings.weight.device

    def prompt_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(format_prompt(text, self.template), bos=True)

    def set_variant(self, loop_mode: str | None = None, template: str | None = None, source: str = "override"):
        """Change the loop mode and/or prompt template (the probe's pick, or a user's override)."""
        if loop_mode is not None:
            self.model.set_loop_mode(loop_mode)
            self.info.loop_mode, self.info.mode_source = loop_mode, source
        if template is not None:
            self.template = resolve_template(template)
            self.info.template, self.info.template_source = template_name(self.template), source
        return self

    def with_variant(self, loop_mode: str | None = None, template: str | None = None) -> EmojiLM:
        """A copy run with another loop mode and/or template, sharing this one's weights.

        Lets one user try an override without changing the model other users see.
        """
        model = copy.copy(self.model)  # shares parameters and submodules; only `args` differs
        twin = EmojiLM(model, self.template, dataclasses.replace(self.info))
        return twin.set_variant(loop_mode, template)

    def generate(
        self,
        prompt_ids: list[int],
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        n_loops: int | None = None,
        max_new_tokens: int = 64,
        seed: int | None = None,
    ) -> list[int]:
        """New ids after prompt_ids, up to and including EOS when the model ends its answer."""
        params = SamplingParams(temperature, top_p, top_k, seed)
        if not prompt_ids or not all(isinstance(i, int) and 0 <= i < self.tokenizer.vocab_size for i in prompt_ids):
            raise ValueError(f"prompt_ids must be a non-empty list of ids from 0 to {self.tokenizer.vocab_size - 1}")
        limit = self.model.args.max_seqlen - len(prompt_ids)
        max_new_tokens = generation.check_int("max_new_tokens", max_new_tokens, 1, max(1, limit))
        prompts = torch.tensor([prompt_ids], device=self.device)
        loops, eos = [self.model.check_loops(n_loops)], self.tokenizer.eos_id
        steps = generation.decode_steps(self.model, prompts, loops, params, max_new_tokens, stop_id=eos)
        return generation.until_eos(steps, eos)[0]

    def stream(
        self, text: str, *, adaptive_threshold: float = 0.0, draft_loops: int = 0, **kwargs
    ) -> Iterator[generation.Generation]:
        """Translate, yielding the growing answer at every complete character (the last has done=True).

        draft_loops > 0: decode self-speculatively, drafting with that many loops
        (emojilm.speculative). kwargs: temperature, top_p, top_k, seed, n_loops, max_new_tokens.
        """
        params, options = _split_sampling(kwargs)
        return generation.stream(
            self, text, params, adaptive_threshold=adaptive_threshold, draft_loops=draft_loops, **options
        )

    def translate(self, text: str, **kwargs) -> generation.Generation:
        *_, result = self.stream(text, **kwargs)
        return result

    def trace(
        self,
        text: str,
        *,
        adaptive_threshold: float = 0.0,
        alternatives: int = 5,
        reuse: generation.Generation | None = None,
        **kwargs,
    ) -> Trace:
        """The translation plus how every loop saw it (see emojilm.trace).

        reuse: the finished result of `translate`/`stream` for this same request (which
        must have been seeded), to skip translating it again.
        """
        params, options = _split_sampling(kwargs)
        alternatives = generation.check_int("alternatives", alternatives, 1, 16)
        return run_trace(
            self, text, params, adaptive_threshold=adaptive_threshold, alternatives=alternatives, generation=reuse,
            **options,
        )  # fmt: skip

    def __repr__(self) -> str:
        i = self.info
        return (
            f"EmojiLM({i.source}: {i.n_params / 1e6:.1f}M params, {self.model.args.n_layers} layers × "
            f"{self.n_loops} loops, {i.loop_mode}, template {i.template!r}, {i.device}/{i.dtype})"
        )


def _split_sampling(kwargs: dict[str, Any]) -> tuple[SamplingParams, dict[str, Any]]:
    """Separate sampling settings from the other generation options, refusing unknown names."""
    sampling = {k: kwargs.pop(k) for k in ("temperature", "top_p", "top_k", "seed") if k in kwargs}
    unknown = set(kwargs) - {"n_loops", "max_new_tokens"}
    if unknown:
        raise ValueError(f"unknown generation options: {', '.join(sorted(unknown))}")
    return SamplingParams(**sampling), kwargs


def _device_and_dtype(device: str | torch.device | None, dtype: str | torch.dtype | None):
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return device, dtype


def load(
    source: str | os.PathLike = "bundled",
    revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    loop_mode: str | None = None,
    template: str | None = None,
    probe: bool = True,
    progress: checkpoint.Progress | None = None,
    probing: Callable[[int, int], None] | None = None,
) -> EmojiLM:
    """Load a checkpoint from the Hub, a local folder, or "bundled".

    The loop mode comes from, in order: the `loop_mode` argument ("override");
    params.json, where a mode name, `false` or no `loop_residual` at all say it
    ("config"; "recorded" in our own checkpoints, which carry an `emojilm`
    section; loop gate tensors say "gated"); then, only for a bare `true` in a
    checkpoint that is not ours, the variant probe among TRUE_READINGS ("probe"),
    applied only when it wins clearly; else the documented reading of `true`
    ("default"). The prompt template: the argument, then our section's record,
    then the probe, then the default. `probe=False` skips the probe; its choice
    is cached per checkpoint, so it runs once. `progress(file, done, total)` is
    called as Hub files download, and `probing(done, total)` after each forward pass of the
    probe (total: the most passes it may still need in all).
    """
    device, dtype = _device_and_dtype(device, dtype)
    if loop_mode is not None and loop_mode not in LOOP_MODES:
        raise ValueError(f"loop_mode must be one of {', '.join(LOOP_MODES)}, got {loop_mode!r}")
    if template is not None:
        resolve_template(template)  # a bad template fails before any download
    resolved = checkpoint.resolve(source, revision, progress=progress)
    params = read_params(resolved.folder / checkpoint.PARAMS)
    args = args_from_params(params)
    state, weights = checkpoint.read_state_dict(resolved.folder)
    state = checkpoint.detect_gates(state, args)
    if "loop_gates" in state:
        args = dataclasses.replace(args, loop_mode="gated")
    state = checkpoint.canonical_state_dict(state, args)
    model = checkpoint.build_model(args, state).to(device=device, dtype=dtype)
    del state  # so that fusing frees each original weight as it goes: the peak grows by one block
    model.fuse_weights()
    model.pack_weights()  # where oneDNN's packed path works (CPU, fp32); otherwise a no-op

    ours = params.get("emojilm")
    ours = ours if isinstance(ours, dict) else None
    # A bare `true` (and no gate tensors) is read the default way, or probed where the checkpoint is not ours.
    reads_true = params.get("model", params).get("loop_residual", False) is True and args.loop_mode != "gated"
    mode_source = "default" if reads_true else ("recorded" if ours else "config")
    recorded_template = (ours or {}).get("prompt_template")
    prompt_template = resolve_template(recorded_template or DEFAULT_TEMPLATE)
    info = ModelInfo(
        source=resolved.source,
        folder=str(resolved.folder),
        revision=resolved.revision,
        note=resolved.note,
        weights=weights,
        n_params=model.num_params(),
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        loop_mode=args.loop_mode,
        mode_source=mode_source,
        template=template_name(prompt_template),
        template_source="recorded" if recorded_template else "default",
    )
    lm = EmojiLM(model, prompt_template, info)
    log.info("loaded %r", lm)

    lm.set_variant(loop_mode, template)  # a pinned half of the variant is what the probe scores the other under
    probe_mode = reads_true and ours is None and loop_mode is None
    probe_template = recorded_template is None and template is None
    if probe and (probe_mode or probe_template):
        _apply_probe(lm, resolved.folder, probe_mode, probe_template, probing)
    return lm


def _apply_probe(lm: EmojiLM, folder, probe_mode: bool, probe_template: bool, probing) -> None:
    """Run the staged probe (or reuse its cached result) and apply only its clear picks."""
    from emojilm.probe import CLEAR_RATIO, LOADING_PAIRS, TRUE_READINGS, StageResult, choose_variant

    weights = next(p for p in (folder / checkpoint.SAFETENSORS, folder / checkpoint.CONSOLIDATED) if p.is_file())
    # What was searched, and under which fixed half: a different pin is a different search.
    search = json.dumps([probe_mode, probe_template, lm.model.loop_mode, lm.template, CLEAR_RATIO, LOADING_PAIRS])
    digest = hashlib.sha256(search.encode()).hexdigest()[:16]
    cached = checkpoint.cache_dir() / "variants" / f"{checkpoint.file_key(weights)}-{digest}.json"
    stages: dict[str, StageResult] | None = None
    if cached.is_file():
        try:
            stages = {k: StageResult(**v) for k, v in json.loads(cached.read_text()).items()}
        except (OSError, ValueError, TypeError):
            stages = None
    if stages is None:
        stages = choose_variant(lm, TRUE_READINGS if probe_mode else None, probe_template, probing)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps({k: v.to_json() for k, v in stages.items()}))
        except OSError as err:
            log.warning("cannot cache the probe's choice at %s: %s", cached, err)
    for key, stage in stages.items():
        if stage.clear:
            lm.set_variant(**{key: stage.winner}, source="probe")
    lm.info.probe_note = "; ".join(stage.describe(key.replace("_", " ")) for key, stage in stages.items())
