"""Train one experiment: the same as ``jaxprop train`` (same arguments, same outputs).

Run: ``python experiments/train.py --config digits_linear_svm --set train.epochs=10``
"""

import sys

from jaxprop.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
