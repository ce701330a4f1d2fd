"""``python -m latentface``: the command line."""

import sys

from latentface.cli import main

sys.exit(main())
