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
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from emojilm import checkpoint, formats, generation
from emojilm.config import ConfigFields, args_from_params, config_fields, read_params
from emojilm.engine import Engine
from emojilm.formats import FormatChoice
from emojilm.layout import KeyFamily, Layout, key_families, read_layout
from emojilm.model import WEIGHT_FORMATS, LoopedTransformer
from emojilm.prompt import format_prompt, resolve_template, template_name
from emojilm.request import Limits, Request, check_integer
from emojilm.tokenizer import ByteTokenizer
from emojilm.trace import Trace, begin_trace, reusable, run_trace
from emojilm.variant import Variant, cached_probe, check_pins, configured_variant, decide_variant

log = logging.getLogger(__name__)

# What `dtype` may say: a weight format (model.WEIGHT_FORMATS), or "auto": the fastest format
# that agrees with float32 on this model (emojilm.formats; the Space's default on CPU).
DTYPES = (*WEIGHT_FORMATS, "auto")


@dataclass
class Anatomy:
    """A loaded checkpoint's anatomy: `python -m emojilm.inspect` prints it, the model panel shows it."""

    fields: ConfigFields  # params.json's model fields: used, ignored, refused
    families: list[KeyFamily]  # the state dict's keys as stored, grouped
    readings: list[tuple[str, str]]  # (what was stored, what it was read as) for each unforeseen tensor
    candidates: tuple[str, ...]  # the loop modes the checkpoint left open (the probe's); () when it says
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # download, convert, probe


@dataclass
class ModelInfo:
    source: str
    folder: str
    revision: str | None
    weights: str  # which file the weights came from
    n_params: int
    device: str
    dtype: str  # the blocks' weight format: float32, bfloat16, float16 or int8
    loop_mode: str
    mode_source: str  # "config", "recorded", "probe", "default" or "override" (see emojilm.variant)
    template: str
    template_source: str
    probe_note: str = ""  # what the probe found, a line per stage it ran: winners, margins, why a default stayed
    anatomy: Anatomy | None = None  # what the checkpoint holds and how it was read (`load` fills it)
    kernel: str = ""  # the kernels the blocks' products run through
    format_note: str = ""  # with dtype="auto": the measured speeds and the agreement checks
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
        """Pin the loop mode and/or prompt template (a user's override), as `Variant.pinned` pins them."""
        info = self.info
        variant = Variant(info.loop_mode, info.mode_source, self.template, info.template_source)
        variant = variant.pinned(loop_mode, template, source)
        self.model.set_loop_mode(variant.loop_mode)
        self.template = variant.template
        info.loop_mode, info.mode_source = variant.loop_mode, variant.mode_source
        info.template, info.template_source = template_name(variant.template), variant.template_source
        return self

    def with_variant(self, loop_mode: str | None = None, template: str | None = None) -> EmojiLM:
        """A copy run with another loop mode and/or template, sharing this one's weights.

        Lets one user try an override without changing the model other users see.
        """
        model = copy.copy(self.model)  # shares parameters and submodules; only `args` differs
        twin = EmojiLM(model, self.template, dataclasses.replace(self.info))
        return twin.set_variant(loop_mode, template)

    @property
    def limits(self) -> Limits:
        """What a request may ask of this model (emojilm.request)."""
        return self.model.args.limits

    def request(self, text: str | Request, **settings) -> Request:
        """A Request checked against this model's limits, with its loop count filled in.

        settings: temperature, top_p, top_k, seed, n_loops, max_new_tokens,
        adaptive_threshold, draft_loops (emojilm.request.Request); or a Request in place of text.
        """
        if isinstance(text, Request):
            if settings:
                raise ValueError(f"settings come with the Request, not beside it: {', '.join(sorted(settings))}")
            return text.for_model(self.limits)
        unknown = set(settings) - {f.name for f in dataclasses.fields(Request)}
        if unknown:
            raise ValueError(f"unknown generation options: {', '.join(sorted(unknown))}")
        return Request(text, **settings).for_model(self.limits)

    def prompt(self, text: str, max_new_tokens: int) -> tuple[list[int], bool]:
        """Prompt ids for text, and whether it was cut (at a character boundary) to leave max_new_tokens of room.

        Cleaning the text and the template change lengths, so candidates are measured
        as prompts. A galloping search keeps the cost proportional to what is kept,
        however long the text.
        """
        budget = self.model.args.max_seqlen - max_new_tokens
        ids = self.prompt_ids(text)
        if len(ids) <= budget:
            return ids, False

        def fits(n: int) -> bool:
            return len(self.prompt_ids(text[:n])) <= budget

        if not fits(0):
            raise ValueError(f"the prompt template leaves no room for text with max_new_tokens={max_new_tokens}")
        good, bad = 0, 1  # fits(good); fits(bad) unknown until tested
        while bad < len(text) and fits(bad):
            good, bad = bad, 2 * bad
        bad = min(bad, len(text))
        while bad - good > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if fits(mid) else (good, mid)
        return self.prompt_ids(text[:good]), True

    def generate(self, prompt_ids: list[int], **settings) -> list[int]:
        """New ids after prompt_ids, up to and including EOS when the model ends its answer.

        settings: temperature, top_p, top_k, seed, n_loops, max_new_tokens (default 64).
        """
        request = self.request("", **settings)
        if request.adaptive_threshold or request.draft_loops:
            raise ValueError("generate decodes with a fixed loop count: adaptive loops and drafting are translate's")
        if not prompt_ids or not all(isinstance(i, int) and 0 <= i < self.tokenizer.vocab_size for i in prompt_ids):
            raise ValueError(f"prompt_ids must be a non-empty list of ids from 0 to {self.tokenizer.vocab_size - 1}")
        check_integer("max_new_tokens", request.max_new_tokens, 1, max(1, self.model.args.max_seqlen - len(prompt_ids)))
        prompts, eos = torch.tensor([prompt_ids], device=self.device), self.tokenizer.eos_id
        steps = generation.decode_steps(self.model, prompts, [request.n_loops], request.sampling,
                                        request.max_new_tokens, stop_id=eos)  # fmt: skip
        return generation.until_eos(steps, eos)[0]

    def stream(
        self, text: str | Request, *, engine: Engine | None = None, **settings
    ) -> Iterator[generation.Generation]:
        """Translate, yielding the growing answer at every complete character (the last has done=True).

        settings as `request`; draft_loops > 0 decodes self-speculatively (emojilm.speculative),
        adaptive_threshold > 0 lets each byte stop looping early. A sampled request
        without a seed gets one drawn here, so that its trace can replay it.
        engine: decode in that engine's batch, beside whatever else it decodes (emojilm.engine:
        the same bytes as alone, drafting and its checks included). The request is submitted at
        once, so streams opened one after another decode together.
        """
        request = self.request(text, **settings)
        draw = request.seed is None and not request.sampling.greedy
        if draw:
            request = dataclasses.replace(request, seed=secrets.randbelow(2**31))
        ids, truncated = self.prompt(request.text, request.max_new_tokens)
        if engine is not None:
            return engine.stream(self.model, self.tokenizer, ids, request, truncated, seed_drawn=draw)
        return generation.stream(self.model, self.tokenizer, ids, request, truncated, seed_drawn=draw)

    def translate(self, text: str | Request, *, engine: Engine | None = None, **settings) -> generation.Generation:
        *_, result = self.stream(text, engine=engine, **settings)
        return result

    def trace(
        self,
        text: str | Request,
        *,
        alternatives: int = 5,
        reuse: generation.Generation | None = None,
        per_layer: bool = False,
        engine: Engine | None = None,
        **settings,
    ) -> Trace:
        """The translation plus how every loop saw it (see emojilm.trace); per_layer: and every
        block application inside each loop (Trace.by_layer, n_layers × n_loops readings).

        reuse: the finished result of `translate`/`stream` for this same request, to
        skip translating it again; one the trace cannot replay exactly is translated
        again, and `Trace.note` says why.
        engine: run the trace's torch work on that engine's thread, and decode its per-loop
        answers and its alternatives' branches in its batch (the same tables as without).
        """
        request = self.request(text, **settings)
        alternatives = check_integer("alternatives", alternatives, 1, 16)
        answer, note = reusable(reuse, request)
        if answer is None:
            given = reuse.handoff.request if note else request  # its seed, when the note says it was not traced
            plain = given if given.sampling.greedy else dataclasses.replace(given, draft_loops=0)
            answer = self.translate(plain, engine=engine)
        if engine is None:
            return run_trace(self.model, self.tokenizer, answer, alternatives, note, per_layer=bool(per_layer))
        model, tokenizer, per_layer = self.model, self.tokenizer, bool(per_layer)
        pending = engine.run(lambda: begin_trace(model, tokenizer, answer, alternatives, note, per_layer))
        decoded = engine.decode(pending.to_decode)
        return engine.run(lambda: pending.finish(decoded))

    def __repr__(self) -> str:
        i = self.info
        return (
            f"EmojiLM({i.source}: {i.n_params / 1e6:.1f}M params, {self.model.args.n_layers} layers × "
            f"{self.n_loops} loops, {i.loop_mode}, template {i.template!r}, {i.device}/{i.dtype})"
        )


def _device_and_format(device: str | torch.device | None, dtype: str | torch.dtype | None) -> tuple[torch.device, str]:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        return device, "bfloat16" if device.type == "cuda" else "float32"
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return device, dtype


def _model_in_format(folder, layout: Layout, device: torch.device, weight_format: str, weights: str = ""):
    """(the model in weight_format, unfused; where its weights came from): the format's cache when an
    earlier load converted them, else converted from the checkpoint's validated weights (`weights`) and cached."""
    cached = checkpoint.read_format_cache(folder, weight_format) if weight_format != "float32" else None
    if cached is not None:
        with torch.device("meta"):
            model = LoopedTransformer(layout.args).to_format(weight_format)
        try:
            model.load_state_dict(cached, strict=True, assign=True)
            where = checkpoint.format_cache(folder, f"model-{weight_format}.safetensors")
            return model.eval().to(device), f"{weight_format} weights (cached conversion {where})"
        except RuntimeError as err:  # a cache written by another version of this code: convert again
            log.warning("the cached %s weights do not fit this model (%s); converting again", weight_format, err)
    model = checkpoint.build_model(layout.args, layout.state).to(device).to_format(weight_format)
    if weight_format == "float32":
        return model, weights
    checkpoint.save_format_cache(model.state_dict(), folder, weight_format)
    return model, f"{weights}, converted to {weight_format}"


def _choose_format(folder, layout: Layout, device: torch.device, template: str, check_texts) -> FormatChoice:
    """The fastest format here that agrees with float32 on this model (emojilm.formats), cached per weights file."""
    verdict = checkpoint.format_cache(folder, "format-choice.json")
    try:
        return FormatChoice.from_json(json.loads(verdict.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    seconds = formats.product_seconds(layout.args, device)
    choice = FormatChoice("float32", seconds)
    candidates = formats.candidates_by_speed(seconds)
    if candidates:
        reference = checkpoint.build_model(layout.args, layout.state).to(device)
        sequences = formats.check_sequences(template, check_texts)
        for weight_format in candidates:
            candidate, _ = _model_in_format(folder, layout, device, weight_format)
            choice.checks.append(formats.compare(reference, candidate.fuse_weights(), sequences))
            if choice.checks[-1].agrees:
                choice.weight_format = weight_format
                break
    try:
        verdict.parent.mkdir(parents=True, exist_ok=True)
        verdict.write_text(json.dumps(choice.to_json()))
    except OSError as err:
        log.warning("cannot cache the weight format's verdict at %s: %s", verdict, err)
    return choice


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
    check_texts: Sequence[str] = (),
) -> EmojiLM:
    """Load a checkpoint from the Hub, a local folder, or "bundled".

    The variant (emojilm.variant) is decided last, on the built model. The loop
    mode comes from, in order: the `loop_mode` argument ("override");
    params.json, where a mode name, `false` or no `loop_residual` at all say it
    ("config"; "recorded" in our own checkpoints, which carry an `emojilm`
    section); then, where the checkpoint leaves it open (a bare `true`: the
    readings in TRUE_READINGS; a per-loop tensor with no mode named: the gate
    readings its shape allows) and is not ours, the variant probe ("probe"),
    applied only when it wins clearly; else the documented default ("default":
    DEFAULT_TRUE_MODE, or DEFAULT_GATE_MODE for a per-loop tensor). The prompt
    template: the argument, then our section's record, then the probe, then the
    default. `probe=False` skips the probe; its choice is cached per checkpoint,
    so it runs once. `progress(file, done, total)` is called as Hub files
    download, and `probing(done, total)` after each forward pass of the probe
    (total: the most passes it may still need in all). `lm.info.anatomy` records
    what the checkpoint holds and how it was read.

    dtype: the blocks' weight format (float32 by default on CPU: exact; bfloat16;
    int8 weight-only; float16 on GPUs) or "auto": the fastest format here that
    agrees with float32 on this model's next-byte predictions (emojilm.formats),
    checked on the probe's known pairs and `check_texts`. Converted weights and
    the verdict are cached, so later starts read them directly.
    """
    device, weight_format = _device_and_format(device, dtype)
    check_pins(loop_mode, template)  # a bad pin fails before any download
    started = time.perf_counter()
    resolved = checkpoint.resolve(source, revision, progress=progress)
    downloaded = time.perf_counter()
    params = read_params(resolved.folder / checkpoint.PARAMS)
    fields, args = config_fields(params), args_from_params(params)
    state, weights = checkpoint.read_state_dict(resolved.folder)
    families = key_families(state)
    layout = read_layout(state, args, fields)
    del state
    configured = configured_variant(params, layout)
    choice = None
    if weight_format == "auto":  # checked on prompts laid out as params.json says
        choice = _choose_format(resolved.folder, layout, device, configured.template, check_texts)
        weight_format = choice.weight_format
    model, weights = _model_in_format(resolved.folder, layout, device, weight_format, weights)
    # Only the model keeps the weights: fusing then frees each original weight as it goes,
    # and the peak grows by one block.
    layout.state.clear()
    n_params = model.num_params()
    model.fuse_weights()
    converted = time.perf_counter()

    # The variant last: the probe, where it runs, scores the open halves on the model as built.
    run_probe = cached_probe(model, resolved.folder, probing) if probe else None
    variant = decide_variant(configured, loop_mode=loop_mode, template=template, probe=run_probe)
    model.set_loop_mode(variant.loop_mode)
    seconds = {"download": downloaded - started, "convert": converted - downloaded,
               "probe": time.perf_counter() - converted}  # fmt: skip
    info = ModelInfo(
        source=resolved.source,
        folder=str(resolved.folder),
        revision=resolved.revision,
        note=resolved.note,
        weights=weights,
        n_params=n_params,
        device=str(device),
        dtype=weight_format,
        loop_mode=variant.loop_mode,
        mode_source=variant.mode_source,
        template=template_name(variant.template),
        template_source=variant.template_source,
        probe_note=variant.probe_note,
        anatomy=Anatomy(fields, families, layout.readings, layout.open_modes, seconds),
        kernel=model.kernel,
        format_note=choice.describe() if choice else "",
    )
    lm = EmojiLM(model, variant.template, info)
    log.info("loaded %r", lm)
    return lm
