"""The package installs: a wheel built from this checkout, installed into a fresh virtual environment,
loads the bundled model, translates and evaluates from a folder outside the checkout.

The fresh environment sees this one's installed packages (torch and the rest) through a .pth file,
so nothing is downloaded; emojilm itself it can only find in the wheel.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from emojilm.paths import BUNDLED_DIR

ROOT = Path(__file__).resolve().parents[1]


def not_in_a_clone(folder: str, names: list[str]) -> list[str]:
    """What a fresh clone lacks: hidden folders (.git, .venv, caches), build leftovers, and at the top
    the run outputs and corpora (not emojilm/data, which is the package's)."""
    top = Path(folder) == ROOT
    return [n for n in names if n.startswith(".") or n == "__pycache__" or n.endswith(".egg-info")
            or (top and n in ("runs", "data", "build"))]  # fmt: skip


# What `emojilm.load("bundled")` and `python -m emojilm.evaluate` read, and the held-out rows the bench reads.
SHIPPED = ["params.json", "model.safetensors", "heldout.jsonl", "eval/phrases.jsonl", "eval/words.jsonl",
           "eval/languages.jsonl"]  # fmt: skip


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(list(map(str, command)), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def shared_site_packages() -> list[str]:
    """This environment's site-packages, which must not hold emojilm: the test would not show where it came from."""
    try:
        importlib.metadata.distribution("emojilm")
        pytest.skip("emojilm is installed in this environment: uninstall it to test a fresh install")
    except importlib.metadata.PackageNotFoundError:
        pass
    folders = site.getsitepackages()
    assert not any((Path(folder) / "emojilm").exists() for folder in folders)
    return folders


def build_wheel(tmp_path: Path) -> Path:
    """The wheel `pip install .` would build, from a copy of the checkout (a build writes into its source)."""
    source, dist = tmp_path / "source", tmp_path / "dist"
    shutil.copytree(ROOT, source, symlinks=True, ignore=not_in_a_clone)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist,
        source, cwd=tmp_path)  # fmt: skip
    (wheel,) = dist.glob("emojilm-*.whl")
    return wheel


def install_in_fresh_env(wheel: Path, env_dir: Path, shared: list[str]) -> tuple[Path, Path]:
    """A new virtual environment with the wheel installed: its python and its site-packages."""
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel,
        cwd=env_dir)  # fmt: skip
    own_site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=env_dir).strip())
    (own_site / "shared.pth").write_text("\n".join(shared) + "\n")  # torch and the rest, without downloading
    return python, own_site


def test_the_wheel_runs_outside_the_checkout(tmp_path, shared_site_packages):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"emojilm/assets/bundled/{name}" for name in SHIPPED} <= set(names)
    assert "emojilm/data/en/words.tsv" in names  # the corpus builder's hand-written words
    assert "emojilm/native/products.cpp" in names  # built on first use (emojilm.native)
    # Only the package: no tests, docs or training runs, and not the .pth that model.safetensors duplicates.
    assert all(name.startswith(("emojilm/", "emojilm-")) and not name.endswith(".pth") for name in names)
    # The bundled weights (which barely compress) plus under 1 MB of code, word lists and evaluation rows.
    assert wheel.stat().st_size < (BUNDLED_DIR / "model.safetensors").stat().st_size + 1_000_000

    python, own_site = install_in_fresh_env(wheel, tmp_path / "env", shared_site_packages)
    work = tmp_path / "work"
    work.mkdir()
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8",
             "HF_HOME": str(tmp_path / "hf"), "EMOJILM_CACHE": str(tmp_path / "cache")}  # fmt: skip
    code = "import emojilm; print(emojilm.__file__); print(emojilm.load('bundled').translate('I love pizza').text)"
    where, answer = run(python, "-c", code, cwd=work, env=clean).splitlines()
    assert Path(where).is_relative_to(own_site) and answer

    # With the Hub offline and nothing cached, the command line serves the bundled model.
    assert run(python, "-m", "emojilm", "I love pizza", cwd=work, env=clean).strip() == answer
    report = run(python, "-m", "emojilm.evaluate", "--model", "bundled", "--limit", "3", cwd=work, env=clean)
    assert f"natural set: 3 hand-written texts from {own_site / 'emojilm' / 'assets' / 'bundled' / 'eval'}" in report
