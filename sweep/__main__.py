"""`python -m sweep --trials N`: the same command line as `python sweep.py`."""

import sys

from sweep.cli import main

sys.exit(main())
