"""``python -m insilico.cli``: the same as the ``insilico`` command."""

import sys

from insilico.cli import main

sys.exit(main())
