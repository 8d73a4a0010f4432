"""The command line, as a user meets it: `python -m emojilm TEXT...`, `python -m emojilm.probe SOURCE`
and `python -m emojilm.inspect SOURCE`.

Mostly run in-process (emojilm.cli.main / probe_main with captured output), and
a few times as real subprocesses. Every answer printed is compared with an
independent call of the library for the same settings.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import emojilm
from emojilm import cli, views
from emojilm.config import GATE_MODES, LOOP_MODES
from emojilm.paths import BUNDLED_DIR
from emojilm.probe import probe_variants
from emojilm.prompt import CANDIDATE_TEMPLATES
from tests.conftest import TINY, hub_snapshot, lingua_shapes, tiny_params

ROOT = Path(__file__).resolve().parent.parent
RECORDED = {"emojilm": {"prompt_template": "newline"}}  # so that loading never needs the probe
CONTEXT = 96  # room for the page's default 64 new bytes after the prompt (TINY's 48 would cut it to 32)
ANSWER = "🍕❤️"  # what the scripted checkpoint writes after any prompt


@pytest.fixture(autouse=True)
def float32_weights(monkeypatch):
    """The commands run in float32, as the library calls they are compared with do: their default, "auto",
    picks a format by timing it, so on a tiny random model it may pick one whose answers differ."""
    monkeypatch.setenv("EMOJILM_DTYPE", "float32")


@pytest.fixture
def tiny(make_checkpoint):
    """A random tiny checkpoint folder in lingua's layout (random bytes out: good for comparing settings)."""
    folder, _ = make_checkpoint(tiny_params(max_seqlen=CONTEXT), seed=3, extra_params=RECORDED)
    return folder


def scripted_state(answer: bytes) -> dict[str, torch.Tensor]:
    """Weights under lingua's key names whose blocks add nothing and whose head maps each byte to the next:
    after a prompt ending in a newline, the model writes `answer` then EOS."""
    chain = [ord("\n"), *answer, 257]
    state = {key: torch.zeros(shape) for key, shape in lingua_shapes(TINY).items()}
    for key in state:
        if key.endswith("norm.weight"):
            state[key] = torch.ones_like(state[key])
    for i, (token, following) in enumerate(itertools.pairwise(chain)):
        state["tok_embeddings.weight"][token, i] = 1.0
        state["output.weight"][following, i] = 10.0
    return state


@pytest.fixture
def scripted(make_checkpoint):
    state = scripted_state(ANSWER.encode())
    folder, _ = make_checkpoint(tiny_params(max_seqlen=CONTEXT), state_override=state, extra_params=RECORDED)
    return folder


def run_cli(capsys, *argv, stdin: str | None = None) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in argv], stdin=None if stdin is None else io.StringIO(stdin))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


# --- translating ---------------------------------------------------------------------------------


def test_prints_the_emoji(capsys, scripted):
    assert run_cli(capsys, "--model", scripted, "I love pizza") == (0, ANSWER + "\n", "")


@pytest.mark.parametrize(
    "options, settings",
    [
        ([], {}),  # greedy: the CLI drafts self-speculatively as the page does, and must print the same bytes
        (["--draft-loops", "0", "--loops", "5", "--max-new", "12"], {"n_loops": 5, "max_new_tokens": 12}),
        (
            ["--temperature", "0.9", "--top-p", "0.8", "--top-k", "40", "--seed", "7", "--loops", "2"],
            {"temperature": 0.9, "top_p": 0.8, "top_k": 40, "seed": 7, "n_loops": 2},
        ),
        (["--adaptive", "0.5", "--max-new", "20"], {"adaptive_threshold": 0.5, "max_new_tokens": 20}),
        (
            ["--temperature", "1.2", "--seed", "11", "--draft-loops", "1"],
            {"temperature": 1.2, "seed": 11, "draft_loops": 1},
        ),
    ],
    ids=["defaults", "loops", "sampling", "adaptive", "drafted-sampling"],
)
def test_output_matches_translate(capsys, tiny, options, settings):
    status, out, err = run_cli(capsys, "--model", tiny, *options, "I love pizza")
    expected = emojilm.load(tiny).translate("I love pizza", **settings).text
    assert (status, out, err) == (0, expected + "\n", "")


def test_json_round_trips_and_its_seed_reproduces_the_sample(capsys, tiny):
    status, out, err = run_cli(capsys, "--model", tiny, "--json", "--temperature", "1.0", "I love pizza", "good night")
    assert (status, err) == (0, "")
    first, second = json_lines(out)
    assert [first["text"], second["text"]] == ["I love pizza", "good night"]
    settings = first["settings"]
    assert isinstance(settings["seed"], int) and settings["seed"] != second["settings"]["seed"]
    assert settings["temperature"] == 1.0 and settings["model"] == str(tiny)
    lm = emojilm.load(tiny)
    sample = lm.translate("I love pizza", temperature=1.0, seed=settings["seed"]).text
    assert first["output"] == sample

    # Feeding every reported setting back in gives the same record again.
    argv = ["--json"]
    for name, value in settings.items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", value]
    status, again, err = run_cli(capsys, *argv, "I love pizza")
    assert (status, err) == (0, "")
    assert json_lines(again) == [first]


@pytest.mark.parametrize(
    "options",
    [[], ["--temperature", "0.9", "--loops", "2", "--max-new", "9"], ["--adaptive", "0.3"], ["--trace"]],
    ids=["greedy-drafted", "sampled", "adaptive", "trace"],
)
def test_a_batch_prints_what_one_text_at_a_time_prints(capsys, tiny, options):
    """--batch decodes the texts together (emojilm.engine): the same records, in order; a bad text fails
    in its place."""
    texts = ["I love pizza", "good night", "", "so much snow", "we won!"]
    options = ["--seed", "4", *options]  # else each run draws its own seeds, which the records show
    one_by_one = run_cli(capsys, "--model", tiny, "--json", *options, *texts)
    assert one_by_one[0] == 1 and "text 3" in one_by_one[2]  # the empty text
    assert run_cli(capsys, "--model", tiny, "--json", "--batch", "3", *options, *texts) == one_by_one
    lines = "".join(text + "\n" for text in texts)
    from_stdin = run_cli(capsys, "--model", tiny, "--json", *options, stdin=lines)
    assert run_cli(capsys, "--model", tiny, "--json", "--batch", "2", *options, stdin=lines) == from_stdin


@pytest.mark.parametrize(
    "options", [["--batch", "0"], ["--batch", "65"], ["--batch", "two"], ["--batch", "1.5"],
                ["--batch", "2", "--temperature", "1", "--draft-loops", "1"]],
)  # fmt: skip
def test_a_bad_batch_is_a_usage_error(capsys, tiny, options):
    status, out, err = run_cli(capsys, "--model", tiny, *options, "I love pizza")
    assert (status, out) == (2, "") and "--batch" in err and len(err.splitlines()) == 1


def test_max_new_is_cut_to_the_context_as_the_page_does(capsys, make_checkpoint):
    folder, _ = make_checkpoint(tiny_params(), seed=3, extra_params=RECORDED)  # a 48-byte context
    status, out, _ = run_cli(capsys, "--model", folder, "--json", "--max-new", "200", "I love pizza")
    (record,) = json_lines(out)
    fits = TINY["max_seqlen"] - 16  # generation.MIN_PROMPT bytes stay for the prompt
    assert status == 0 and record["settings"]["max_new"] == fits
    assert record["output"] == emojilm.load(folder).translate("I love pizza", max_new_tokens=fits).text


def test_trace_tables(capsys, tiny):
    status, out, _ = run_cli(capsys, "--model", tiny, "--json", "--trace", "--max-new", "8", "--seed", "5", "hi")
    assert status == 0
    (record,) = json_lines(out)
    trace = emojilm.load(tiny).trace("hi", max_new_tokens=8, seed=5)
    assert record["output"] == trace.output
    assert [row["output"] for row in record["per_loop_outputs"]] == trace.per_loop_outputs["output"].tolist()
    assert len(record["per_loop_outputs"]) == TINY["n_loops"]
    assert [(r["loop"], r["char"], r["top_char"]) for r in record["by_loop"]] == list(
        trace.by_loop[["loop", "char", "top_char"]].itertuples(index=False, name=None)
    )
    assert len(record["summary"]) == TINY["n_loops"]

    status, out, _ = run_cli(capsys, "--model", tiny, "--trace", "--max-new", "8", "hi")
    lines = out.splitlines()
    assert status == 0 and lines[0] == trace.output
    assert "Answer when stopped after k loops:" in lines
    assert sum(line.startswith("loop ") for line in lines) == TINY["n_loops"]  # the top-picks table's rows


def test_stdin_one_text_per_line(capsys, scripted):
    status, out, err = run_cli(capsys, "--model", scripted, stdin="I love pizza\n\nhello\r\n")
    assert status == 1  # the blank line is reported; the others are still translated, in step with the input
    assert out.splitlines() == [ANSWER, "", ANSWER]
    assert err.splitlines() == ["emojilm: line 2: Type some text to translate into emoji."]


def test_stdin_json_reports_the_bad_line(capsys, tiny):
    status, out, err = run_cli(capsys, "--model", tiny, "--json", stdin="pizza\n   \nthe sun\n")
    records = json_lines(out)
    assert status == 1 and len(err.splitlines()) == 1
    assert [r["text"] for r in records] == ["pizza", "   ", "the sun"]
    assert "error" in records[1] and "output" not in records[1]
    lm = emojilm.load(tiny)
    assert [records[0]["output"], records[2]["output"]] == [lm.translate("pizza").text, lm.translate("the sun").text]


@pytest.mark.parametrize(
    "argv, status, named",
    [
        ([""], 1, "Type some text"),
        (["--temperature", "banana", "x"], 2, "--temperature"),
        (["--loops", "-3", "x"], 2, "--loops"),
        (["--top-k", "-1", "x"], 2, "--top-k"),
        (["--draft-loops", "3", "x"], 2, "--draft-loops"),  # the tiny model has 3 loops: at most 2 draft
        (["--adaptive", "0.1", "--draft-loops", "1", "x"], 2, "cannot be combined"),
        (["--loop-mode", "sideways", "x"], 2, "--loop-mode"),
        (["--template", "no slot", "x"], 2, "--template"),
        (["--no-such-option", "x"], 2, "--no-such-option"),
    ],
    ids=[
        "empty-text",
        "temperature",
        "loops",
        "top-k",
        "draft-loops",
        "adaptive-and-draft",
        "loop-mode",
        "template",
        "unknown-option",
    ],
)
def test_bad_input_is_one_line_and_a_failing_status(capsys, tiny, argv, status, named):
    got, out, err = run_cli(capsys, "--model", tiny, *argv)
    assert got == status
    assert out.strip() == ""
    assert len(err.splitlines()) == 1 and named in err and "Traceback" not in err


@pytest.mark.parametrize("name, value", [("EMOJILM_LOOP_MODE", "sideways"), ("EMOJILM_TEMPLATE", "no slot")])
def test_a_bad_pin_in_the_environment_names_the_allowed_values(capsys, monkeypatch, tiny, name, value):
    monkeypatch.setenv(name, value)
    status, out, err = run_cli(capsys, "--model", tiny, "x")
    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1 and "pin" in err and ("inject_embeddings" in err or "newline" in err)


def test_missing_model_folder(capsys, tmp_path):
    status, out, err = run_cli(capsys, "--model", tmp_path / "no" / "such" / "folder", "I love pizza")
    assert (status, out) == (1, "")
    assert len(err.splitlines()) == 1 and "no/such/folder" in err and "Traceback" not in err


def test_revision_needs_a_hub_model(capsys, tiny):
    status, _, err = run_cli(capsys, "--model", tiny, "--revision", "main", "x")
    assert status == 2 and "--revision" in err


@pytest.mark.parametrize("pinned_by", ["flag", "environment"])
def test_a_pinned_revision_that_cannot_load_is_an_error_not_another_model(
    capsys, monkeypatch, make_checkpoint, hf_cache, pinned_by
):
    folder, _ = make_checkpoint()
    files = {name: (folder / name).read_bytes() for name in ("params.json", "consolidated.pth")}
    hub_snapshot(hf_cache, "chili-lab/Tiny-ByteLM", files, "c0ffee" * 6 + "abcd")  # main is cached, v2 is not
    monkeypatch.setenv("EMOJILM_REPO", "chili-lab/Tiny-ByteLM")
    if pinned_by == "flag":
        status, out, err = run_cli(capsys, "--revision", "v2", "I love pizza")
    else:
        monkeypatch.setenv("EMOJILM_REVISION", "v2")
        status, out, err = run_cli(capsys, "I love pizza")
    assert (status, out) == (1, "")  # the Hub is offline in tests
    assert err.splitlines() == [
        "emojilm: cannot load the model 'chili-lab/Tiny-ByteLM': the Hub is offline (HF_HUB_OFFLINE is set), and "
        f"'chili-lab/Tiny-ByteLM' (revision v2) is not in the local Hugging Face cache ({hf_cache})"
    ]


@pytest.mark.skipif(not (BUNDLED_DIR / "params.json").is_file(), reason="no bundled model")
def test_default_falls_back_to_the_bundled_model_with_a_note(capsys, monkeypatch):
    monkeypatch.delenv("EMOJILM_REPO", raising=False)
    status, out, err = run_cli(capsys, "--json", "I love pizza")  # the Hub is offline in tests
    assert status == 0
    assert len(err.splitlines()) == 1 and "bundled" in err and "chili-lab/Emoji-ByteLM" in err
    (record,) = json_lines(out)
    assert record["settings"]["model"] == "bundled"
    assert record["output"] == emojilm.load("bundled").translate("I love pizza").text


def test_help(capsys):
    status, out, _ = run_cli(capsys, "--help")
    assert status == 0
    for flag in ["--model", "--revision", "--loops", "--temperature", "--top-p", "--top-k", "--seed", "--max-new",
                 "--draft-loops", "--adaptive", "--trace", "--json"]:  # fmt: skip
        assert flag in out


# --- as real processes ---------------------------------------------------------------------------


def run_module(module: str, *argv, stdin: bytes = b"", cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMOJILM_CACHE": str(cache), "PYTHONIOENCODING": "utf-8"}
    env.pop("EMOJILM_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, argv)],
        input=stdin, capture_output=True, cwd=ROOT, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_subprocess_translates(tiny, scripted, isolated_caches):
    done = run_module("emojilm", "--model", tiny, "--json", "--loops", "2", "I love pizza", cache=isolated_caches)
    assert done.returncode == 0, done.stderr.decode()
    (record,) = json_lines(done.stdout.decode("utf-8"))
    assert record["output"] == emojilm.load(tiny).translate("I love pizza", n_loops=2).text

    # stdin read as bytes: a line that is not UTF-8 is reported, the others are translated.
    done = run_module("emojilm", "--model", scripted, stdin=b"I love pizza\n\xff\xfe\nhello\n", cache=isolated_caches)
    assert done.returncode == 1
    assert done.stdout.decode("utf-8").splitlines() == [ANSWER, "", ANSWER]
    assert done.stderr.decode().splitlines() == ["emojilm: line 2: not valid UTF-8 text"]


def test_subprocess_missing_model_folder(tmp_path, isolated_caches):
    done = run_module("emojilm", "--model", tmp_path / "missing", "I love pizza", cache=isolated_caches)
    assert done.returncode == 1 and done.stdout == b""
    assert len(done.stderr.decode().splitlines()) == 1 and b"Traceback" not in done.stderr


# --- the probe -----------------------------------------------------------------------------------


def table_rows(out: str) -> list[list[str]]:
    """The rows of the probe's ranked table (after its header and rule)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rank")) + 2
    end = lines.index("", start)
    return [line.split() for line in lines[start:end]]


def test_probe_table_has_one_row_per_candidate(capsys, tiny):
    status = cli.probe_main([str(tiny)])
    out = capsys.readouterr().out
    assert status == 0
    rows = table_rows(out)
    modes = [mode for mode in LOOP_MODES if mode not in GATE_MODES]  # the tiny checkpoint has no per-loop tensor
    assert len(rows) == len(modes) * len(CANDIDATE_TEMPLATES)
    expected = probe_variants(emojilm.load(tiny, probe=False).model)
    assert [(r[1], r[2]) for r in rows] == list(expected[["loop_mode", "template"]].itertuples(index=False, name=None))
    assert [float(r[3]) for r in rows] == pytest.approx(expected["score"].tolist(), abs=1e-4)
    assert rows[-1][4] == "—"  # the last row has nothing after it
    assert float(rows[0][4]) == pytest.approx(expected["score"][0] - expected["score"][1], abs=1e-4)
    assert out.rstrip().splitlines()[-1].startswith(("clear winner", "no clear winner"))


def test_probe_chosen_candidates_json(capsys, tiny):
    status = cli.probe_main([str(tiny), "--json", "--modes", "add,none", "--templates", "newline,tab"])
    record = json.loads(capsys.readouterr().out)
    assert status == 0
    assert {(c["loop_mode"], c["template"]) for c in record["candidates"]} == {
        ("add", "newline"), ("add", "tab"), ("none", "newline"), ("none", "tab"),
    }  # fmt: skip
    scores = [c["score"] for c in record["candidates"]]
    assert scores == sorted(scores, reverse=True) and record["candidates"][-1]["margin_to_next"] is None


@pytest.mark.parametrize(
    "argv, status",
    [(["{missing}"], 1), (["{tiny}", "--modes", "sideways"], 2), (["{tiny}", "--templates", "nope"], 2),
     (["{tiny}", "--modes", "gated"], 2), (["{tiny}", "--revision", "v1"], 2), ([], 2)],
    ids=["missing-source", "mode", "template", "gated-without-gates", "revision", "no-source"],
)  # fmt: skip
def test_probe_bad_input(capsys, tiny, tmp_path, argv, status):
    argv = [a.format(tiny=tiny, missing=tmp_path / "missing") for a in argv]
    assert cli.probe_main(argv) == status
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and "Traceback" not in captured.err


def test_probe_subprocess(tiny, isolated_caches):
    done = run_module(
        "emojilm.probe", tiny, "--modes", "add", "--templates", "newline,tab,colon", cache=isolated_caches
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""  # no runpy warning about emojilm.probe being imported twice
    assert len(table_rows(done.stdout.decode("utf-8"))) == 3


# --- inspect -------------------------------------------------------------------------------------


def run_inspect(capsys, *argv) -> tuple[int, str, str]:
    status = cli.inspect_main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_inspect_shows_the_anatomy_of_a_checkpoint_with_unforeseen_tensors(capsys, make_checkpoint):
    gates = {f"_orig_mod.res_gates.{t}": torch.full((32,), 0.5) for t in range(3)}
    gates |= {f"layers.{i}.attention.g_proj.weight": torch.zeros(4, 32) for i in range(2)}
    folder, _ = make_checkpoint(tiny_params(loop_residual=True, halting="act"), state_override=gates)
    status, out, err = run_inspect(capsys, folder, "--no-probe")
    assert (status, err) == (0, "")
    lm = emojilm.load(folder, probe=False)
    for stored, what in lm.info.anatomy.readings:  # each reading, as the library records it
        assert f"- `{stored}`: {what}" in out
    assert (
        "`_orig_mod.res_gates.{i}` | 3 | [32] | float32 |" in out
        and "`layers.{i}.attention.g_proj.weight` | 2 | [4, 32]" in out
    )
    assert "- ignored, not known here: `halting` = `'act'`" in out
    assert "- loop mode `gated`: the documented default, among the readings the checkpoint leaves open" in out
    assert "Load time: download " in out and " · convert " in out and " · probe " in out


def test_inspect_of_a_checkpoint_that_cannot_load_shows_what_it_can_and_why(capsys, make_checkpoint):
    folder, _ = make_checkpoint(
        tiny_params(mixer="gdn"), state_override={"norm.weight": None, "extra_scale": torch.ones(5)}
    )
    status, out, err = run_inspect(capsys, folder)
    assert status == 1 and err == ""
    assert out.startswith(f"**{folder}** cannot be loaded:")
    assert "- refused: `mixer`: mixer='gdn' cannot run here" in out
    assert "| `extra_scale` | 1 | [5] | float32 |" in out and "`norm.weight`" not in out  # the keys as stored

    folder, _ = make_checkpoint(tiny_params(), state_override={"norm.weight": None, "extra_scale": torch.ones(5)})
    status, out, _ = run_inspect(capsys, folder)
    assert status == 1
    assert "missing keys (1): norm.weight" in out and "unexpected keys (1): extra_scale [5]" in out


@pytest.mark.parametrize("argv", [[], ["bundled", "--revision", "v1"], ["bundled", "--sideways"]])
def test_inspect_bad_usage(capsys, argv):
    status, out, err = run_inspect(capsys, *argv)
    assert status == 2 and out == "" and len(err.splitlines()) == 1


def test_inspect_subprocess_on_the_bundled_model(isolated_caches, monkeypatch):
    monkeypatch.delenv("EMOJILM_DTYPE")  # the commands' own default, "auto"
    done = run_module("emojilm.inspect", "bundled", cache=isolated_caches)
    assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()
    out = done.stdout.decode("utf-8")
    # The CLI's format is auto's, timed on this machine: the panel of the model loaded in that format
    chosen = re.search(r", (\w+) weights", out).group(1)
    lm = emojilm.load("bundled", dtype=chosen)
    assert out.rstrip("\n").splitlines()[:3] == views.model_info_markdown(lm).splitlines()[:3]
    assert f"- loop mode `{lm.info.loop_mode}`: as this project's checkpoint records" in out
    assert out.count("| `layers.{i}.") == 9  # the block's nine tensors, one family each
