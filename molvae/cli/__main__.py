"""`python -m molvae.cli`: the same as the `molvae` command."""

import sys

from molvae.cli import main

sys.exit(main())
