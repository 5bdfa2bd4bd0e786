"""``python -m interp.cli`` runs the ``interp`` command."""

import sys

from interp.cli import main

sys.exit(main())
