"""`python -m imgdiff` runs the command line."""

import sys

from imgdiff.cli import main

sys.exit(main())
