"""`python -m emojilm.inspect SOURCE`: a checkpoint's anatomy (the command line is in emojilm.cli).

An entry point only: nothing imports it.
"""

import sys

from emojilm.cli import inspect_main, run

if __name__ == "__main__":
    sys.exit(run(inspect_main))
