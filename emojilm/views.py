"""What the Space shows, computed from results: HTML heatmap, tables, plot data, text.

Pure functions of a Trace / Generation / EmojiLM, so they are tested without a browser.
"""

from __future__ import annotations

import html

import pandas as pd

from emojilm.generation import Generation
from emojilm.request import short_repr
from emojilm.tokenizer import invalid_utf8_bytes
from emojilm.trace import Trace

# Heatmap colours: probability 0 → pale grey, 1 → the accent colour.
_LOW = (241, 243, 249)
_HIGH = (99, 102, 241)


def _colour(p: float) -> str:
    p = min(1.0, max(0.0, p))
    r, g, b = (round(lo + (hi - lo) * p) for lo, hi in zip(_LOW, _HIGH, strict=True))
    return f"rgb({r},{g},{b})"


def heatmap_html(trace: Trace) -> str:
    """Loops down, answer characters across; colour = P(final character) at that loop.

    Each cell shows the loop's own top character; hovering (or tapping: cells
    take focus) shows its top-5 alternatives.
    """
    table = trace.by_loop
    if table.empty:
        return '<div class="elm-empty">The model gave an empty answer: nothing to show.</div>'
    chars = table.drop_duplicates("position").sort_values("position")["char"].tolist()
    head = "".join(f'<th scope="col">{html.escape(c)}</th>' for c in chars)
    rows = []
    for loop, cells in table.sort_values(["loop", "position"]).groupby("loop"):
        tds = []
        for cell in cells.itertuples():
            char = html.escape(cell.char)
            tip = f"loop {loop}: P({char}) = {cell.p_final_char:.2f}<br>top 5: {html.escape(cell.top5)}"
            text_colour = "#fff" if cell.p_final_char > 0.55 else "#1f2937"
            tds.append(
                f'<td tabindex="0" style="background:{_colour(cell.p_final_char)};color:{text_colour}" '
                f'aria-label="loop {loop}, {char}: top {html.escape(cell.top_char)}, '
                f'P(final) {cell.p_final_char:.2f}">'
                f'<span class="elm-top">{html.escape(cell.top_char)}</span>'
                f'<span class="elm-p">{cell.p_final_char:.2f}</span>'
                f'<span class="elm-tip">{tip}</span></td>'
            )
        rows.append(f'<tr><th scope="row">loop {loop}</th>{"".join(tds)}</tr>')
    legend = (
        '<div class="elm-legend"><span>P(final character):</span>'
        f'<span class="elm-bar" style="background:linear-gradient(90deg,{_colour(0)},{_colour(1)})"></span>'
        "<span>0 → 1</span></div>"
    )
    return (
        '<div class="elm-heatmap"><table><thead><tr><th></th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{legend}"
    )


def layer_lens_html(trace: Trace) -> str:
    """Answer characters down, every block application across (loop 1's layers, then loop 2's...):
    colour = P(final character) read out there (Trace.by_layer). A thin cell per layer keeps
    192 columns on one screen; hovering a cell names its loop, layer and top pick."""
    table = trace.by_layer
    if table is None:
        return '<div class="elm-empty">This trace was made without per_layer: nothing to show.</div>'
    if table.empty:
        return '<div class="elm-empty">The model gave an empty answer: nothing to show.</div>'
    n_layers = int(table["layer"].max())
    columns = int(table["loop"].max()) * n_layers
    rows = []
    for _, cells in table.sort_values(["position", "loop", "layer"]).groupby("position"):
        char = html.escape(cells["char"].iloc[0])
        marks = []
        for cell in cells.itertuples():
            edge = " elm-loop-end" if cell.layer == n_layers else ""
            tip = (f"loop {cell.loop}, layer {cell.layer}: top {cell.top_char} {cell.p_top:.2f}; "
                   f"P({cell.char}) = {cell.p_final_char:.2f}")  # fmt: skip
            marks.append(f'<i class="elm-cell{edge}" style="background:{_colour(cell.p_final_char)}" '
                         f'title="{html.escape(tip)}"></i>')  # fmt: skip
        rows.append(f'<span class="elm-layer-char">{char}</span>{"".join(marks)}')
    legend = (
        f'<div class="elm-legend"><span>{columns} block applications across ({n_layers} layers × '
        f"{columns // n_layers} loops; a line ends each loop). P(final character):</span>"
        f'<span class="elm-bar" style="background:linear-gradient(90deg,{_colour(0)},{_colour(1)})"></span>'
        "<span>0 → 1</span></div>"
    )
    grid = f"grid-template-columns:2.4em repeat({columns}, minmax(2px, 1fr))"
    return f'<div class="elm-layers"><div class="elm-layer-grid" style="{grid}">{"".join(rows)}</div></div>{legend}'


def per_loop_table(trace: Trace) -> pd.DataFrame:
    """Answer per loop count, with the first loop count that already gives the final answer marked."""
    table = trace.per_loop_outputs
    same = table["same_as_final"].tolist()
    first = next((i for i, s in enumerate(same) if s and all(same[i:])), None)
    marks = ["★ final answer from here" if i == first else ("✓" if s else "") for i, s in enumerate(same)]
    return pd.DataFrame({"loops": table["loops"], "answer": table["output"], "same as final": marks})


def convergence_frame(trace: Trace) -> pd.DataFrame:
    """Long-format (loop, metric, value) rows for one line per metric (entropy and KL in nats).

    The names are short so that the plot's legend fits on one line on a phone.
    """
    names = {"mean_p_final": "P(final answer)", "mean_entropy": "entropy", "mean_kl": "KL to final"}
    summary = trace.summary.rename(columns=names)
    metrics = list(names.values())
    return summary.melt(id_vars="loop", value_vars=metrics, var_name="metric", value_name="value").dropna()


def summary_line(result: Generation, seed: int | None = None) -> str:
    """One line under the answer: bytes, loops, the seed used, time, speed, and notes if the input
    was cut or the answer holds bytes that form no character (a byte model can emit any byte)."""
    n_bytes = len([i for i in result.token_ids if i < 256])
    loops = f"{result.n_loops} loops"
    if result.loops_per_char and result.mean_loops < result.n_loops:
        loops = f"{result.mean_loops:.1f} of {result.n_loops} loops on average (adaptive)"
    seconds = result.prefill_s + result.decode_s
    seed_used = "" if seed is None else f" · seed {seed}"
    line = f"{n_bytes} bytes · {loops}{seed_used} · {seconds:.2f} s · {result.tokens_per_s:.0f} bytes/s"
    if result.draft_stats and result.draft_stats.drafted:
        line += f" · {result.draft_stats.acceptance:.0%} of bytes drafted by the first loops kept"
    if result.truncated:
        line += " · ⚠️ the text was too long and was cut to fit the model's context"
    # Counted once the answer is whole: mid-stream, a character's first bytes wait for the rest.
    if result.done and (invalid := invalid_utf8_bytes(result.token_ids)):
        line += f" · ⚠️ {invalid} of the answer's bytes form no character (shown as �)"
    return line


def _code(text: str) -> str:
    """Text from a checkpoint as inline code (shown as is, never as markup), unable to close its code span."""
    return "`" + str(text).replace("`", "'").replace("\n", " ") + "`"


def _text(text: str) -> str:
    """Text from a checkpoint in Markdown prose: no HTML gets through."""
    return html.escape(str(text), quote=False)


def model_info_markdown(lm, note: str = "") -> str:
    """The model panel: what runs, then the checkpoint's anatomy (what `python -m emojilm.inspect` prints)."""
    info, args = lm.info, lm.model.args
    lines = [f"> {note}\n"] if note else []
    lines += [
        f"**{_text(info.source)}**" + (f" @ `{info.revision[:12]}`" if info.revision else ""),
        f"- {info.n_params / 1e6:.2f}M parameters · {args.n_layers} layers × {args.n_loops} loops "
        f"(dim {args.dim}, {args.n_heads} heads)",
        f"- {info.device}, {info.dtype} weights · kernel: {info.kernel}",
    ]
    if info.format_note:
        lines.append(f"- {_text(info.format_note)}")
    if info.anatomy is None:  # a model made in memory (tests): no checkpoint to describe
        return "\n".join([*lines, "", *variant_lines(info, ())])
    return "\n".join([*lines, "", *anatomy_markdown(lm)])


def anatomy_markdown(lm) -> list[str]:
    """A loaded checkpoint's anatomy as Markdown lines: the variant and why, params.json's fields,
    what each unforeseen tensor was read as, the state dict's key families, the load time."""
    info, anatomy = lm.info, lm.info.anatomy
    lines = ["### Variant", *variant_lines(info, anatomy.candidates), ""]
    lines += ["### params.json (model section)", *fields_lines(anatomy.fields), ""]
    if anatomy.readings:
        lines += ["### Read from tensors we did not foresee"]
        lines += [f"- {_code(stored)}: {_text(what)}" for stored, what in anatomy.readings] + [""]
    lines += ["### State dict", *families_lines(anatomy.families), ""]
    seconds = anatomy.seconds
    split = " · ".join(f"{name} {seconds[name]:.2f} s" for name in ("download", "convert", "probe") if name in seconds)
    lines.append(f"Load time: {split} ({info.weights})" if split else f"Weights: {info.weights}")
    return lines


def variant_lines(info, candidates: tuple[str, ...]) -> list[str]:
    """How the loop mode and the template were chosen, and why."""
    why = {
        "config": "as params.json says",
        "recorded": "as this project's checkpoint records",
        "override": "pinned by the operator or the page",
        "probe": "the probe's clear winner",
        "default": "the documented default",
    }
    mode = f"- loop mode {_code(info.loop_mode)}: {why.get(info.mode_source, info.mode_source)}"
    if candidates:
        mode += f", among the readings the checkpoint leaves open ({', '.join(candidates)})"
    lines = [
        mode,
        f"- prompt template {_code(repr(info.template))}: {why.get(info.template_source, info.template_source)}",
    ]
    if info.probe_note:
        lines += [f"- {_text(stage)}" for stage in info.probe_note.splitlines()]
        if "default" in (info.mode_source, info.template_source) and "no clear winner" in info.probe_note:
            lines.append("- where the probe found no clear winner, the documented default stays")
    elif info.mode_source == "default" or info.template_source == "default":
        lines.append("- the probe did not run (probe=False): the documented defaults stand")
    return lines


def fields_lines(fields) -> list[str]:
    """params.json's model fields: used, ignored (training only, unknown here) and refused."""

    def listed(values: dict) -> str:
        return ", ".join(f"{_code(key)} = {_code(short_repr(value))}" for key, value in values.items()) or "none"

    lines = [f"- used: {listed(fields.used)}", f"- ignored, training only: {listed(fields.training)}"]
    lines.append(f"- ignored, not known here: {listed(fields.unknown)}")
    if fields.refused:
        lines.append("- refused: " + "; ".join(f"{_code(key)}: {_text(why)}" for key, why in fields.refused.items()))
    return lines


def families_lines(families) -> list[str]:
    """The state dict's key families as a Markdown table."""

    def row(*cells) -> str:  # a | inside a cell would end it
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    rows = [row(_code(f.name), f.count, _text(f.shapes), _text(f.dtypes)) for f in families]
    return ["| keys | count | shape | dtype |", "|---|---:|---|---|", *rows]
