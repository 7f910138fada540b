"""``python -m jaxprop``: the ``jaxprop`` command."""

import sys

from jaxprop.cli import main

sys.exit(main())
