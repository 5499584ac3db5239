"""``python -m spurmem`` (and ``torchrun -m spurmem``, which needs a module to run): the ``spurmem`` command."""

import sys

from spurmem.cli import main

if __name__ == "__main__":
    sys.exit(main())
