"""``python -m spurmem``: the same as the ``spurmem`` command (useful with ``PYTHONPATH`` on a checkout)."""

import sys

from spurmem.cli import main

if __name__ == "__main__":
    sys.exit(main())
