"""`python -m emojilm TEXT...`: translate text into emoji (the logic is in emojilm.cli)."""

import sys

from emojilm.cli import run

if __name__ == "__main__":
    sys.exit(run())
