"""``erm-continue``: plain cross-entropy fine-tuning from an ERM checkpoint (SPEC 7's control).

It is ERM's loss under another name so that a comparison can give it exactly the framework's
start (``init_from``), optimiser, schedule and epoch budget: whatever the framework gains over
``erm-continue`` is due to its loss, not to more training.
"""

from __future__ import annotations

from spurmem.train.algorithm import Algorithm


class ERMContinue(Algorithm):
    """Mean cross-entropy, meant to be run with ``init_from`` an ERM run."""

    name = "erm-continue"
    uses_group_labels = False
