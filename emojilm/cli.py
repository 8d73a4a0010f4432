"""The command line: `python -m emojilm TEXT...`, `python -m emojilm.probe SOURCE` and
`python -m emojilm.inspect SOURCE`.

Values become the page's Request (emojilm.space.parse_request, emojilm.request's
ranges), so the command line accepts and refuses exactly what the page and its
API do. Every problem ends as one line on stderr and a non-zero exit status,
never a traceback (set EMOJILM_DEBUG=1 to see one for an unexpected error).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

import emojilm
from emojilm import checkpoint, views
from emojilm.config import LOOP_MODES, config_fields, read_params
from emojilm.engine import Engine
from emojilm.generation import Generation
from emojilm.layout import key_families
from emojilm.lm import DTYPES, EmojiLM
from emojilm.prompt import CANDIDATE_TEMPLATES, resolve_template
from emojilm.request import RANGES, TOP_K, Request, parse_integer
from emojilm.sources import BUNDLED, SourceConfig, failure_reason
from emojilm.space import parse_request

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "python -m emojilm"
PROBE_PROG = "python -m emojilm.probe"
INSPECT_PROG = "python -m emojilm.inspect"
# parse_request names values as the API does; the command line's flags for them.
FLAGS = {
    "temperature": "--temperature",
    "top_p": "--top-p",
    "top_k": "--top-k",
    "loops": "--loops",
    "max_new_tokens": "--max-new",
    "seed": "--seed",
    "threshold": "--adaptive",
    "draft_loops": "--draft-loops",
    "batch": "--batch",
}
BATCH = (1, 64)  # texts decoded together with --batch


class UsageError(Exception):
    """A bad option or value (exit status 2); the message is one line."""


class Failure(Exception):
    """Something that stops the whole command, such as a model that cannot load (exit status 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage too: one line is the rule here
        raise UsageError(f"{message} (see --help)")


def _flagged(message: str) -> str:
    """parse_request's message with the command line's flag in place of the API's name."""
    for name, flag in FLAGS.items():
        if message.startswith(name + " "):
            return flag + message[len(name) :]
    return message


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# --- python -m emojilm ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Translate text into emoji with Emoji-ByteLM, a looped byte transformer. Each TEXT is "
        "translated in turn and its emoji printed on a line of its own; with no TEXT, one text per line "
        "is read from stdin. Values are checked as the Space's API checks them.",
        epilog="Exit status: 0 when every text was translated; 1 when a text or the model failed (each "
        "problem is one line on stderr, and the other texts are still translated: a failed text prints an "
        "empty line, or with --json an object with an 'error', so that outputs stay in step with inputs); "
        "2 for a bad option or value. Environment: EMOJILM_REPO, EMOJILM_REVISION, EMOJILM_DEVICE and "
        "EMOJILM_DTYPE as for the app; HF_HUB_OFFLINE=1 never touches the network.",
    )
    add = parser.add_argument
    add("texts", nargs="*", metavar="TEXT", help="text to translate (none: read one text per line from stdin)")
    add("--model", metavar="SOURCE", help="a Hub repo id, a local folder (params.json + weights) or 'bundled' "
        "(default: $EMOJILM_REPO or chili-lab/Emoji-ByteLM, as the app: its cached copy when the Hub is offline; "
        "the bundled demo model, with a note on stderr, when that cannot be loaded)")  # fmt: skip
    add("--revision", metavar="REV", help="Hub branch, tag or commit of the model; one that cannot be loaded (not "
        "cached while the Hub is offline) is an error, never another model [$EMOJILM_REVISION]")  # fmt: skip
    add("--loops", metavar="N", help=f"loops to run, {RANGES['loops']} (default: the trained count)")
    add("--temperature", metavar="T", help=f"sampling temperature, {RANGES['temperature']} (default 0)")
    add("--top-p", metavar="P", help=f"nucleus sampling: keep the likeliest bytes up to this mass, {RANGES['top_p']}")
    add("--top-k", metavar="K", help=f"keep only the K likeliest bytes, {RANGES['top_k']} (default 0)")
    add("--seed", metavar="S", help=f"sampling seed, {RANGES['seed']} (the default; --json reports it)")
    add("--max-new", metavar="N", help=f"most bytes to write, {RANGES['max_new_tokens']} (default 64)")
    add("--draft-loops", metavar="N", help=f"decode self-speculatively, drafting with the first N loops, "
        f"{RANGES['draft_loops']} (default as the page: a quarter of the loops when greedy, not adaptive)")  # fmt: skip
    add("--adaptive", metavar="THRESHOLD", help="adaptive loops: stop looping a byte once two successive loops "
        f"agree within THRESHOLD nats of KL, {RANGES['threshold']} (the page suggests 0.05)")  # fmt: skip
    add("--dtype", choices=DTYPES, help="weight format: float32 (exact), bfloat16, int8 (weight-only), or auto: "
        "the fastest here that agrees with float32 on the model (default, as the app) [$EMOJILM_DTYPE]")  # fmt: skip
    add("--loop-mode", choices=LOOP_MODES, help="run the checkpoint with this loop-residual mode "
        "(default: from the checkpoint or the probe)")  # fmt: skip
    add("--template", metavar="NAME", help=f"prompt template: one of {', '.join(CANDIDATE_TEMPLATES)}, or a "
        "string holding {text} once (default: from the checkpoint or the probe)")  # fmt: skip
    add("--batch", metavar="N", help=f"decode up to N texts together in one batch, {BATCH[0]} to {BATCH[1]} "
        "(default 1): faster for many texts, and each answer is byte for byte the one it gets alone; stdin is "
        "then read N lines at a time; sampled texts cannot be drafted")  # fmt: skip
    add("--trace", action="store_true", help="also print the answer with 1..n loops and each loop's top picks")
    add("--json", action="store_true", help="print one JSON object per text: text, output and the settings used "
        "(with --trace also the trace tables as lists of rows)")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    """Run the command line on argv (default sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stdin = sys.stdin if stdin is None else stdin
    return _guarded("emojilm", lambda: _translate_command(argv, stdin, sys.stdout, sys.stderr))


def _guarded(prog: str, command: Callable[[], int]) -> int:
    """Run a command; every failure becomes one line on stderr and an exit status, never a traceback."""
    err = sys.stderr
    try:
        return command()
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else EXIT_OK
    except UsageError as problem:
        print(f"{prog}: {problem}", file=err)
        return EXIT_USAGE
    except Failure as problem:
        print(f"{prog}: {problem}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=err)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): run() ends quietly
        raise
    except Exception as problem:
        if os.environ.get("EMOJILM_DEBUG"):
            raise
        print(f"{prog}: unexpected error: {type(problem).__name__}: {_one_line(problem)}", file=err)
        return EXIT_FAILED


def _translate_command(argv: list[str], stdin: TextIO, out: TextIO, err: TextIO) -> int:
    args = build_parser().parse_args(argv)
    if args.template is not None:
        try:
            resolve_template(args.template)
        except ValueError as problem:
            raise UsageError(f"--template: {problem}") from None
    lm = load_model(args.model, args.revision, err, loop_mode=args.loop_mode, template=args.template, dtype=args.dtype)
    batch = check_settings(lm, args)

    if args.texts:
        several = len(args.texts) > 1
        texts: Iterable[tuple[str, str | None, str | None]] = (
            (f"text {n}" if several else "text", text, None) for n, text in enumerate(args.texts, 1)
        )
    else:
        if stdin.isatty():
            print("emojilm: reading texts from stdin, one per line (end with Ctrl-D)", file=err)
        texts = ((f"line {n}", text, problem) for n, (text, problem) in enumerate(stdin_lines(stdin), 1))

    engine = Engine(max_rows=batch) if batch > 1 else None
    status = EXIT_OK
    while group := list(itertools.islice(texts, batch)):
        for where, text, outcome in translate_group(lm, group, args, engine):
            if isinstance(outcome, str):
                status = EXIT_FAILED
                print(f"emojilm: {where}: {outcome}", file=err, flush=True)
                print(_dumps({"text": text, "error": outcome}) if args.json else "", file=out, flush=True)
                continue
            print(_dumps(outcome) if args.json else _plain_record(outcome, args.trace), file=out, flush=True)
    return status


def translate_group(
    lm: EmojiLM, group: list[tuple[str, str | None, str | None]], args: argparse.Namespace, engine: Engine | None
) -> Iterator[tuple[str, str | None, dict | str]]:
    """(where, text, its record or its problem) for each (where, text, problem) of the group, in order.
    With an engine, every text of the group is submitted before the first is read: they decode together."""
    opened = []
    for where, text, problem in group:
        request = stream = None
        if problem is None:
            try:
                request = _request(lm, text, args)
                stream = lm.stream(request, engine=engine)
            except ValueError as bad:  # only the text can be bad now: the settings were checked
                problem = _one_line(bad)
        opened.append((where, text, problem, request, stream))
    for where, text, problem, request, stream in opened:
        if problem is None:
            try:
                *_, result = stream
                yield where, text, translation_record(lm, text, request, result, args, engine)
                continue
            except ValueError as bad:
                problem = _one_line(bad)
        yield where, text, problem


def stdin_lines(stdin: TextIO) -> Iterator[tuple[str | None, str | None]]:
    """(text, problem) per line of stdin, as it arrives; a line that is not UTF-8 is a problem, not a crash."""
    buffer = getattr(stdin, "buffer", None)
    if buffer is None:  # a text stream without bytes underneath (tests, an io.StringIO)
        for line in stdin:
            yield line.rstrip("\r\n"), None
        return
    for n, raw in enumerate(buffer, 1):
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError:
            yield None, "not valid UTF-8 text"
        else:
            yield line.rstrip("\r\n"), None


def load_model(
    source: str | None,
    revision: str | None,
    err: TextIO,
    *,
    loop_mode: str | None = None,
    template: str | None = None,
    dtype: str | None = None,
    note_prefix: str = "emojilm",
) -> EmojiLM:
    """The model a command asked for; with no source, the app's default model or else the bundled one.

    An explicit source that cannot load is a Failure, and so is the default Hub model
    at a pinned revision; otherwise the default Hub model that cannot load falls back
    to the bundled one with a one-line note on `err`.
    """
    try:
        config = SourceConfig.from_env(hub_revision=revision, dtype=dtype)
    except ValueError as problem:  # a bad $EMOJILM_LOOP_MODE, $EMOJILM_TEMPLATE or $EMOJILM_DTYPE
        raise UsageError(_one_line(problem)) from None
    if revision and source is not None and (source == BUNDLED or Path(source).expanduser().exists()):
        raise UsageError(f"--revision applies to a Hub model, not to {source!r}")
    kwargs = {"device": config.device, "dtype": config.dtype, "loop_mode": loop_mode, "template": template}
    progress = _download_progress(err) if err.isatty() else None
    if source is None:
        if not config.hub_repo:
            print(
                f"{note_prefix}: note: using the bundled model, since no Hub model is configured (EMOJILM_REPO)",
                file=err,
            )
        else:
            try:
                pins = {"loop_mode": loop_mode or config.loop_mode, "template": template or config.template}
                return emojilm.load(config.hub_repo, config.hub_revision, progress=progress, **{**kwargs, **pins})
            except Exception as problem:  # anything: the bundled model is the documented fallback
                if os.environ.get("EMOJILM_DEBUG"):
                    raise
                if config.hub_revision:  # a pinned revision is never stood in for by another model
                    raise Failure(f"cannot load the model {config.hub_repo!r}: {failure_reason(problem)}") from None
                reason = f"{config.hub_repo} could not be loaded: {failure_reason(problem)}"
                print(f"{note_prefix}: note: using the bundled model, since {reason}", file=err, flush=True)
        source, revision = BUNDLED, None
    try:
        return emojilm.load(source, revision, progress=progress, **kwargs)
    except Exception as problem:
        if os.environ.get("EMOJILM_DEBUG"):
            raise
        raise Failure(f"cannot load the model {source!r}: {failure_reason(problem)}") from None


def _download_progress(err: TextIO):
    """A progress line on a terminal while Hub files download (the real checkpoint is gigabytes)."""
    last = [0.0]

    def report(filename: str, done: int, total: int | None) -> None:
        finished = total is not None and done >= total
        if not finished and time.monotonic() - last[0] < 0.5:
            return
        last[0] = time.monotonic()
        share = f" of {total / 1e6:,.1f} MB" if total else ""
        err.write(f"\rdownloading {filename}: {done / 1e6:,.1f} MB{share}" + ("\n" if finished else ""))
        err.flush()

    return report


def _request(lm: EmojiLM, text: Any, args: argparse.Namespace) -> Request:
    """The command line's values as the page's Request (emojilm.space.parse_request), plus --top-k and
    --draft-loops, which only the command line sets (default: the page's drafting)."""
    adaptive = args.adaptive is not None
    request = parse_request(
        lm, text, args.temperature, args.top_p, args.loops, args.max_new, args.seed, adaptive, args.adaptive
    )
    top_k = parse_integer("top_k", args.top_k, *TOP_K, default=0)
    if args.draft_loops is None:
        return replace(request, top_k=top_k)
    draft_loops = parse_integer("draft_loops", args.draft_loops, 0, max(0, request.n_loops - 1))
    if draft_loops and request.adaptive_threshold > 0:
        raise ValueError("--draft-loops and --adaptive cannot be combined; choose one")
    return replace(request, top_k=top_k, draft_loops=draft_loops)


def check_settings(lm: EmojiLM, args: argparse.Namespace) -> int:
    """Check every value once, before any text (with a stand-in text); the --batch size."""
    try:
        request = _request(lm, "a stand-in text", args)
        batch = parse_integer("batch", args.batch, *BATCH, default=1)
    except ValueError as problem:
        raise UsageError(_flagged(_one_line(problem))) from None
    if batch > 1 and request.draft_loops and not request.sampling.greedy:
        raise UsageError("--batch cannot draft a sampled text: its acceptance draws turn on the logits' last bits, "
                         "which differ between a batch and one text at a time; drop --draft-loops")  # fmt: skip
    return batch


def translation_record(
    lm: EmojiLM, text: str, request: Request, result: Generation, args: argparse.Namespace, engine: Engine | None
) -> dict:
    """The record --json prints for one translated text (with --trace, its trace, through the engine when batched)."""
    settings = {
        "model": lm.info.source,
        "revision": lm.info.revision,
        "loop_mode": lm.info.loop_mode,
        "template": lm.info.template,
        "loops": request.n_loops,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "seed": request.seed,
        "max_new": request.max_new_tokens,
        "draft_loops": request.draft_loops,
        "adaptive": request.adaptive_threshold or None,
    }
    record: dict[str, Any] = {"text": text, "output": result.text, "truncated": result.truncated, "settings": settings}
    if args.trace:
        record["trace"] = lm.trace(request, reuse=result, engine=engine)
    return record


def _plain_record(record: dict, with_trace: bool) -> str:
    if not with_trace:
        return record["output"]
    trace = record["trace"]
    per_loop = views.per_loop_table(trace)
    lines = [record["output"], "", "Answer when stopped after k loops:"]
    lines += format_table(list(per_loop.columns), per_loop.astype(str).values.tolist())
    lines += ["", "Each loop's top pick for each character, with P(final character) (the heatmap):"]
    if trace.by_loop.empty:
        lines.append("(the answer is empty: nothing to show)")
    else:
        chars = trace.by_loop.drop_duplicates("position").sort_values("position")["char"].tolist()
        rows = []
        for loop, cells in trace.by_loop.sort_values(["loop", "position"]).groupby("loop"):
            rows.append([f"loop {loop}", *(f"{c.top_char} {c.p_final_char:.2f}" for c in cells.itertuples())])
        lines += format_table(["", *chars], rows)
    return "\n".join(lines) + "\n"


def _dumps(record: dict) -> str:
    record = dict(record)
    trace = record.pop("trace", None)
    if trace is not None:
        for name in ("by_loop", "per_loop_outputs", "summary"):
            record[name] = table_records(getattr(trace, name))
    return json.dumps(record, ensure_ascii=False, default=_json_value)


def table_records(table: pd.DataFrame) -> list[dict]:
    """A table as JSON-ready rows (NaN → null)."""
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
        return None if isinstance(value, float) and not math.isfinite(value) else value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _width(text: str) -> int:
    """Terminal columns: wide characters (most emoji, CJK) take two, joiners and selectors none."""
    width, last = 0, 0
    for ch in text:
        if ch == "\ufe0f" and last == 1:  # emoji presentation: "❤" then VS16 shows two columns wide
            width, last = width + 1, 2
        elif not (unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf")):
            last = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
            width += last
    return width


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a plain-text table, columns padded to the widest cell."""
    widths = [max(_width(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c) + " " * (w - _width(str(c))) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def run(entry=main) -> int:
    """The process entry point: a closed pipe (`| head`) ends it quietly, odd characters never crash printing."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        status = entry()
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's own flush at exit does not complain
        return EXIT_FAILED


# --- python -m emojilm.probe ---------------------------------------------------------------------


def build_probe_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROBE_PROG,
        description="Rank the ways a checkpoint could be run (loop mode × prompt template) by how well each "
        "predicts known text→emoji pairs (emojilm.probe): mean log-probability per answer byte, best first.",
        epilog="margin: how far the score is ahead of the next row. exact: share of pairs whose every byte is "
        "the model's top choice. Exit status: 0 done; 1 the model cannot load; 2 a bad option or value.",
    )
    add = parser.add_argument
    add("source", metavar="SOURCE", help="a Hub repo id, a local folder (params.json + weights) or 'bundled'")
    add("--revision", metavar="REV", help="Hub branch, tag or commit")
    add("--modes", metavar="M,M", help=f"loop modes to try, comma-separated, from {', '.join(LOOP_MODES)} "
        "(default: every mode the checkpoint runs: the gate readings when it has a per-loop tensor)")  # fmt: skip
    add("--templates", metavar="T,T", help=f"prompt templates to try, comma-separated, from "
        f"{', '.join(CANDIDATE_TEMPLATES)} (default: all)")  # fmt: skip
    add("--json", action="store_true", help="print the ranking as one JSON object")
    return parser


def probe_main(argv: Sequence[str] | None = None) -> int:
    """Run the probe's command line on argv (default sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return _guarded("emojilm.probe", lambda: _probe_command(argv, sys.stdout, sys.stderr))


def _names(flag: str, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise UsageError(f"{flag} names nothing")
    return names


def _probe_command(argv: list[str], out: TextIO, err: TextIO) -> int:
    from emojilm.probe import CLEAR_RATIO, is_clear_winner, loss_ratio, probe_variants

    args = build_probe_parser().parse_args(argv)
    modes, templates = _names("--modes", args.modes), _names("--templates", args.templates)
    unknown = [mode for mode in modes or () if mode not in LOOP_MODES]
    if unknown:
        raise UsageError(f"--modes: unknown loop mode {unknown[0]!r}; choose from {', '.join(LOOP_MODES)}")
    for template in templates or ():
        try:
            resolve_template(template)
        except ValueError as problem:
            raise UsageError(f"--templates: {problem}") from None
    lm = _load_for_probe(args.source, args.revision)
    cannot = [mode for mode in modes or () if mode not in lm.model.loop_modes]
    if cannot:  # the gate readings need a per-loop tensor, and a checkpoint with one runs only them
        raise UsageError(
            f"--modes: this checkpoint cannot run {', '.join(cannot)}; it runs {', '.join(lm.model.loop_modes)}"
        )
    try:
        table = probe_variants(lm.model, modes=modes, templates=templates)
    except ValueError as problem:
        raise UsageError(_one_line(problem)) from None
    table["margin_to_next"] = table["score"] - table["score"].shift(-1)
    clear = is_clear_winner(table)
    if args.json:
        columns = ["loop_mode", "template", "score", "margin_to_next", "exact"]
        record = {"source": lm.info.source, "revision": lm.info.revision, "clear_winner": clear,
                  "clear_ratio": CLEAR_RATIO, "loss_ratio": min(loss_ratio(table), 1e9),
                  "candidates": table_records(table[columns])}  # fmt: skip
        print(json.dumps(record, ensure_ascii=False, default=_json_value), file=out)
        return EXIT_OK
    rows = [
        [str(rank), row.loop_mode, row.template, f"{row.score:.4f}",
         "—" if pd.isna(row.margin_to_next) else f"{row.margin_to_next:.4f}", f"{row.exact:.0%}"]
        for rank, row in enumerate(table.itertuples(), 1)
    ]  # fmt: skip
    header = ["rank", "mode", "template", "score", "margin", "exact"]
    lines = [f"Variant probe for {lm.info.source}: mean log p per answer byte (nats), best first", ""]
    lines += format_table(header, rows)
    best = table.iloc[0]
    if len(table) < 2:
        verdict = f"only one candidate: {best['loop_mode']} with template {best['template']}"
    else:
        ratio = loss_ratio(table)
        verdict = (f"{'clear winner' if clear else 'no clear winner'}: {best['loop_mode']} with template "
                   f"{best['template']}, {best['margin_to_next']:.3f} nats per byte ahead; the runner-up's loss is "
                   f"{ratio:.2f}x the winner's (a clear win needs {CLEAR_RATIO}x)")  # fmt: skip
    print("\n".join([*lines, "", verdict]), file=out)
    return EXIT_OK


def _load_for_probe(source: str, revision: str | None) -> EmojiLM:
    if revision and (source == BUNDLED or Path(source).expanduser().exists()):
        raise UsageError(f"--revision applies to a Hub model, not to {source!r}")
    config = SourceConfig.from_env()
    try:
        return emojilm.load(source, revision, device=config.device, dtype=config.dtype, probe=False)
    except Exception as problem:
        if os.environ.get("EMOJILM_DEBUG"):
            raise
        raise Failure(f"cannot load the model {source!r}: {failure_reason(problem)}") from None


# --- python -m emojilm.inspect -------------------------------------------------------------------


def build_inspect_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=INSPECT_PROG,
        description="Show a checkpoint's anatomy, as the Space's model panel does: the variant chosen and why "
        "(the probe's margins), params.json's fields (used, ignored, refused), what each tensor we did not "
        "foresee was read as, the state dict's key families with shapes and dtypes, and the load time "
        "(download, convert, probe).",
        epilog="Exit status: 0 loaded; 1 the checkpoint cannot load (what could be read is shown, then why); "
        "2 a bad option. Environment: EMOJILM_DEVICE and EMOJILM_DTYPE as for the app.",
    )
    add = parser.add_argument
    add("source", metavar="SOURCE", help="a Hub repo id, a local folder (params.json + weights) or 'bundled'")
    add("--revision", metavar="REV", help="Hub branch, tag or commit")
    add("--no-probe", action="store_true", help="skip the variant probe (the documented defaults stand)")
    return parser


def inspect_main(argv: Sequence[str] | None = None) -> int:
    """Run the inspect command line on argv (default sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return _guarded("emojilm.inspect", lambda: _inspect_command(argv, sys.stdout))


def _inspect_command(argv: list[str], out: TextIO) -> int:
    args = build_inspect_parser().parse_args(argv)
    if args.revision and (args.source == BUNDLED or Path(args.source).expanduser().exists()):
        raise UsageError(f"--revision applies to a Hub model, not to {args.source!r}")
    config = SourceConfig.from_env()
    try:
        lm = emojilm.load(args.source, args.revision, config.device, config.dtype, probe=not args.no_probe)
    except (ValueError, OSError) as problem:  # CheckpointError is a ValueError
        if os.environ.get("EMOJILM_DEBUG"):
            raise
        print("\n".join(_readable_parts(args.source, args.revision, problem)), file=out)
        return EXIT_FAILED
    print(views.model_info_markdown(lm), file=out)
    return EXIT_OK


def _readable_parts(source: str, revision: str | None, problem: Exception) -> list[str]:
    """What can be read of a checkpoint that does not load (its fields, its keys), then every problem."""
    lines = [f"**{source}** cannot be loaded:", *(f"    {line}" for line in str(problem).splitlines())]
    try:
        folder = checkpoint.resolve(source, revision).folder  # from the local cache by now, if it downloaded
        lines += [
            "",
            "### params.json (model section)",
            *views.fields_lines(config_fields(read_params(folder / "params.json"))),
        ]
        state, weights = checkpoint.read_state_dict(folder)
        lines += ["", f"### State dict ({weights})", *views.families_lines(key_families(state))]
    except (ValueError, OSError) as err:
        lines += ["", f"(read no further: {failure_reason(err)})"]
    return lines
