"""`python -m fastcluster` runs the command line."""

import sys

from fastcluster.cli import main

sys.exit(main())
