"""`python -m reslab`: the same command as `reslab`."""

import sys

from reslab.cli import main

sys.exit(main())
