"""Where the files that ship with emojilm are: the bundled model, its evaluation set, the page's css.

They live in the repository's assets/ folder, beside app.py, where the Space serves them.
emojilm/assets is a link to that folder, and building a wheel copies what it links to, so the
same path finds them in a checkout and in an installed package.
"""

from importlib.resources import files
from pathlib import Path

# Installed packages are plain folders (never zipped), so the package's files are a Path.
ASSETS = Path(str(files("emojilm") / "assets"))
BUNDLED_DIR = ASSETS / "bundled"  # the demo model: emojilm.load("bundled")
HELDOUT_FILE = "heldout.jsonl"  # a model folder's held-out phrases (the bundled model has them)
EVAL_DIR = BUNDLED_DIR / "eval"  # the natural set: hand-written, kept out of training
