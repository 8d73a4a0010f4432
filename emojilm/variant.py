"""The variant: which loop mode chains the loops and which prompt template lays out a text, and why.

Neither is certain for the published checkpoint (docs/checkpoint.md, "Guessed"). Each half
is decided here, in this order:

1. the operator's pin, the `loop_mode` or `template` argument of `emojilm.load` ("override");
2. what params.json says: a mode name, `false` or no `loop_residual` at all ("config";
   "recorded" in this project's own checkpoints, whose `emojilm` section also records the
   template);
3. what the checkpoint leaves open (a bare `true`: config.TRUE_READINGS; a per-loop tensor
   with no mode named: the gate readings its shape allows; an unrecorded template), in a
   checkpoint not ours: the variant probe (emojilm.probe), applied only where it wins clearly
   ("probe");
4. else the documented default ("default": config.DEFAULT_TRUE_MODE or DEFAULT_GATE_MODE,
   which the layout reads an open mode as, and prompt.DEFAULT_TEMPLATE).

`configured_variant` gives steps 2 and 4, `decide_variant` adds 1 and 3. The probe's
stages are cached per weights file and search (`cached_probe`), so a checkpoint is
probed once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emojilm import checkpoint
from emojilm.config import LOOP_MODES
from emojilm.layout import Layout
from emojilm.model import LoopedTransformer
from emojilm.probe import CLEAR_RATIO, LOADING_PAIRS, Progress, StageResult, choose_variant
from emojilm.prompt import DEFAULT_TEMPLATE, resolve_template

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """A loop mode and a prompt template, who chose each, and what is still open to the probe."""

    loop_mode: str
    mode_source: str  # "override", "config", "recorded", "probe" or "default"
    template: str  # the literal template (prompt.resolve_template)
    template_source: str
    open_modes: tuple[str, ...] = ()  # the loop modes the probe may choose between; () when the mode is settled
    open_template: bool = False  # whether the probe may choose the template
    probe_note: str = ""  # what the probe found, a line per stage it ran: winners, margins, why a default stayed

    def pinned(self, loop_mode: str | None = None, template: str | None = None, source: str = "override") -> Variant:
        """This variant with the halves given chosen by `source`, and no longer open."""
        variant = self
        if loop_mode is not None:
            variant = dataclasses.replace(variant, loop_mode=loop_mode, mode_source=source, open_modes=())
        if template is not None:
            template = resolve_template(template)
            variant = dataclasses.replace(variant, template=template, template_source=source, open_template=False)
        return variant


# The probe as decide_variant runs it: the stages it ran for what the variant leaves open, by half.
Probe = Callable[[Variant], dict[str, StageResult]]


def check_pins(loop_mode: str | None, template: str | None) -> None:
    """Refuse a pin that names no loop mode or no template (`load` checks them before any download)."""
    if loop_mode is not None and loop_mode not in LOOP_MODES:
        raise ValueError(f"loop_mode must be one of {', '.join(LOOP_MODES)}, got {loop_mode!r}")
    if template is not None:
        resolve_template(template)


def configured_variant(params: dict[str, Any], layout: Layout) -> Variant:
    """The variant params.json and the tensors give, before any pin or probe: the loop mode the
    layout read (params.json's, or the default where the checkpoint leaves it open) and the
    template our own section records, else the default."""
    ours = params.get("emojilm")
    ours = ours if isinstance(ours, dict) else None
    recorded = (ours or {}).get("prompt_template")
    return Variant(
        loop_mode=layout.args.loop_mode,
        mode_source="default" if layout.open_modes else ("recorded" if ours else "config"),
        template=resolve_template(recorded or DEFAULT_TEMPLATE),
        template_source="recorded" if recorded else "default",
        open_modes=layout.open_modes if ours is None else (),  # ours ran in the mode they load in: never probed
        open_template=recorded is None,
    )


def decide_variant(
    configured: Variant, *, loop_mode: str | None = None, template: str | None = None, probe: Probe | None = None
) -> Variant:
    """The variant a load runs: the pins over what params.json gives; then, for what is still
    open, the probe's clear picks (every stage's verdict goes into probe_note); the rest stays.

    A pinned half is what the probe scores the other half under. `probe=None` skips it.
    """
    variant = configured.pinned(loop_mode, template)
    if probe is None or not (variant.open_modes or variant.open_template):
        return variant
    stages = probe(variant)
    for half, stage in stages.items():
        if stage.clear:
            variant = variant.pinned(**{half: stage.winner}, source="probe")
    note = "\n".join(stage.describe(half.replace("_", " ")) for half, stage in stages.items())
    return dataclasses.replace(variant, probe_note=note)


def cached_probe(model: LoopedTransformer, folder: Path, progress: Progress | None = None) -> Probe:
    """The staged probe (emojilm.probe.choose_variant) on `model`, the weights of `folder`: it
    scores what a variant leaves open under the half it settles. Its stages are cached per
    weights file and search, so later loads read them instead."""

    def run(variant: Variant) -> dict[str, StageResult]:
        cached = _cache_path(folder, variant)
        if cached.is_file():
            try:
                return {k: StageResult(**v) for k, v in json.loads(cached.read_text()).items()}
            except (OSError, ValueError, TypeError):
                pass  # unreadable: probe again, and write it anew
        stages = choose_variant(
            model, variant.open_modes, variant.open_template,
            mode=variant.loop_mode, template=variant.template, progress=progress,
        )  # fmt: skip
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps({k: v.to_json() for k, v in stages.items()}))
        except OSError as err:
            log.warning("cannot cache the probe's choice at %s: %s", cached, err)
        return stages

    return run


def _cache_path(folder: Path, variant: Variant) -> Path:
    """Where the probe's stages for this search of this folder's weights file are cached."""
    # What was searched (the staged search, with its second template stage), and under which settled half:
    # a different pin is a different search.
    search = json.dumps(
        ["templates again", variant.open_modes, variant.open_template, variant.loop_mode, variant.template,
         CLEAR_RATIO, LOADING_PAIRS]
    )  # fmt: skip
    digest = hashlib.sha256(search.encode()).hexdigest()[:16]
    return checkpoint.cache_dir() / "variants" / f"{checkpoint.file_key(checkpoint.weights_file(folder))}-{digest}.json"
