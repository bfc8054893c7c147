"""Entry point: `python sweep.py --trials N` (see `python sweep.py --help`)."""

import sys

from sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
