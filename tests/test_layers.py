"""The library's floors, and that its imports only go down them.

The core (tokenizer up to lm) runs a checkpoint; serving (the page, its API, links,
the command line), training and the tools stand on it. Inside the core each module
imports only modules below it in CORE, so a walk of one translation goes from
`emojilm.load` down the floors and never back up. Read from the source with ast,
lazy imports inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "emojilm"

# Bottom to top: each core module may import only those before it.
CORE = [
    "paths", "tokenizer", "prompt", "sampling", "request", "config", "native", "kernels", "kvcache", "model", "step",
    "speculative", "generation", "engine", "trace", "checkpoint", "layout", "formats", "probe", "variant", "lm",
    "__init__",
]  # fmt: skip
SERVING = ["sources", "views", "space", "links", "cli", "__main__", "inspect", "probe.__main__"]
TRAINING = ["handwritten", "lexicon", "corpus", "evaluate", "grow", "train"]
TOOLS = ["benchkit", "bench_loading", "bench_training", "bench_engine", "bench", "loadtest"]
# What each floor may stand on (tools may use everything).
ALLOWED = {
    "core": {"core"},
    "serving": {"core", "serving"},
    "training": {"core", "training"},
    "tools": {"core", "serving", "training", "tools"},
}
FLOOR = {name: floor for floor, names in [("core", CORE), ("serving", SERVING), ("training", TRAINING),
                                           ("tools", TOOLS)] for name in names}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


def imported(path: Path) -> set[str]:
    """The emojilm modules a file imports ("probe" for emojilm.probe and anything under it but its __main__)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "emojilm":
            inner = node.module.split(".")[1:]
            found |= {".".join(inner)} if inner else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("emojilm.")}
    return {name if name in FLOOR else name.split(".")[0] for name in found if name}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_floor():
    assert sorted(set(map(module_name, MODULES)) - set(FLOOR)) == []


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_imports_go_down_the_floors(path):
    name = module_name(path)
    floor = FLOOR[name]
    for other in imported(path):
        assert FLOOR[other] in ALLOWED[floor], f"{name} ({floor}) imports {other} ({FLOOR[other]})"
        if floor == "core" and FLOOR[other] == "core":
            assert CORE.index(other) < CORE.index(name), f"{name} imports {other}, which stands above it"
