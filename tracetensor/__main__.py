"""`python -m tracetensor ...` is the `tracetensor` command."""

import sys

from .cli import main

sys.exit(main())
