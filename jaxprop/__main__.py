"""``python -m jaxprop``: the ``jaxprop`` command."""

import sys

from jaxprop.cli import main

if __name__ == "__main__":
    sys.exit(main())
