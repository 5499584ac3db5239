"""``python -m spurmem`` (and ``torchrun -m spurmem``, which needs a module to run): the ``spurmem`` command."""

from spurmem.cli import main

raise SystemExit(main())
