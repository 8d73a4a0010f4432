"""`python -m emojilm.probe SOURCE`: the variant probe's ranked table (the command line is in emojilm.cli).

An entry point only: the library (emojilm.probe) never imports the command line.
"""

import sys

from emojilm.cli import probe_main, run

if __name__ == "__main__":
    sys.exit(run(probe_main))
