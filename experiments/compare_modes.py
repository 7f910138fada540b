"""Forward vs reverse mode, measured: the same as ``jaxprop compare``.

  python experiments/compare_modes.py [--config configs/compare.toml] [--quick] [--out DIR]
"""

import sys

from jaxprop.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
