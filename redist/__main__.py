"""`python -m redist` is the `redist` command."""

import sys

from redist.cli import main

sys.exit(main())
