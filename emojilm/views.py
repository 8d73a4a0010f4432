"""What the Space shows, computed from results: HTML heatmap, tables, plot data, text.

Pure functions of a Trace / Generation / EmojiLM, so they are tested without a browser.
"""

from __future__ import annotations

import html

import pandas as pd

from emojilm.generation import Generation
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


def model_info_markdown(lm, note: str = "") -> str:
    info, args = lm.info, lm.model.args
    lines = [
        f"**{html.escape(info.source)}**" + (f" @ `{info.revision[:12]}`" if info.revision else ""),
        f"- {info.n_params / 1e6:.2f}M parameters · {args.n_layers} layers × {args.n_loops} loops "
        f"(dim {args.dim}, {args.n_heads} heads)",
        f"- loop mode: `{info.loop_mode}` ({info.mode_source}) · prompt template: `{info.template!r}` "
        f"({info.template_source})",
        f"- {info.device}, {info.dtype} weights · kernel: {info.kernel}",
    ]
    if info.format_note:
        lines.append(f"- {html.escape(info.format_note)}")
    if info.probe_note:
        lines.insert(3, f"- {html.escape(info.probe_note)}")
    if note:
        lines.insert(0, f"> {note}\n")
    return "\n".join(lines)
