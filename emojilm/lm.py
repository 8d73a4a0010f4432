"""`emojilm.load`: a source in, a ready-to-use EmojiLM out.

An EmojiLM bundles the model, the tokenizer, the prompt template and a record
of where everything came from (shown in the app's model panel).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from collections.abc import Iterator
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
    mode_source: str  # "recorded", "probe", "override" or "default"
    template: str
    template_source: str


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
) -> EmojiLM:
    """Load a checkpoint from the Hub, a local folder, or "bundled".

    The loop mode and prompt template come, in order of preference, from the
    arguments, from params.json (our checkpoints record both), from a cached or
    fresh run of the variant probe (the published checkpoint records neither;
    `probe=False` skips it), or from the defaults. `progress(file, done, total)` is
    called as Hub files download.
    """
    device, dtype = _device_and_dtype(device, dtype)
    if loop_mode is not None and loop_mode not in LOOP_MODES:
        raise ValueError(f"loop_mode must be one of {LOOP_MODES}, got {loop_mode!r}")
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

    recorded = params.get("emojilm", {})
    prompt_template = resolve_template(recorded.get("prompt_template", DEFAULT_TEMPLATE))
    mode_recorded = isinstance(params.get("model", {}).get("loop_residual"), str) or args.loop_mode == "gated"
    info = ModelInfo(
        source=resolved.source,
        folder=str(resolved.folder),
        revision=resolved.revision,
        weights=weights,
        n_params=model.num_params(),
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        loop_mode=args.loop_mode,
        mode_source="recorded" if mode_recorded else "default",
        template=template_name(prompt_template),
        template_source="recorded" if "prompt_template" in recorded else "default",
    )
    lm = EmojiLM(model, prompt_template, info)
    log.info("loaded %r", lm)

    guessed = not mode_recorded or "prompt_template" not in recorded
    if guessed and probe and loop_mode is None and template is None:
        _apply_probe(lm, resolved.folder, args.loop_mode if mode_recorded else None)
    return lm.set_variant(loop_mode, template)


def _apply_probe(lm: EmojiLM, folder, fixed_mode: str | None) -> None:
    """Pick the variant by the probe, cached per checkpoint so it runs once."""
    from emojilm.probe import probe_variants

    weights = next(p for p in (folder / checkpoint.SAFETENSORS, folder / checkpoint.CONSOLIDATED) if p.is_file())
    cached = checkpoint.cache_dir() / "variants" / f"{checkpoint.file_key(weights)}-{fixed_mode or 'any'}.json"
    choice: dict[str, Any] | None = None
    if cached.is_file():
        try:
            choice = json.loads(cached.read_text())
        except (OSError, json.JSONDecodeError):
            choice = None
    if choice is None:
        table = probe_variants(lm, modes=[fixed_mode] if fixed_mode else None)
        best = table.iloc[0]
        choice = {"loop_mode": best["loop_mode"], "template": best["template"], "score": float(best["score"])}
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(choice))
        except OSError as err:
            log.warning("cannot cache the probe's choice at %s: %s", cached, err)
    lm.set_variant(None if fixed_mode else choice["loop_mode"], choice["template"], source="probe")
