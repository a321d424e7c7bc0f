"""``python -m subminute``: the same as the ``subminute`` command."""

import sys

from .cli import main

sys.exit(main())
