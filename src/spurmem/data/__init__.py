"""Group-labelled data: one schema, one registry of loaders (``DATASETS``, in ``spurmem.data.datasets``).

Names are imported on first use, so importing a submodule (``spurmem.data.schema``) stays light.
"""

from __future__ import annotations

from spurmem.lazy import lazy_exports

_EXPORTS = {
    "AUGMENTATIONS": "spurmem.data.augment",
    "build_augment": "spurmem.data.augment",
    "Batch": "spurmem.data.batches",
    "iterate_batches": "spurmem.data.batches",
    "to_float": "spurmem.data.batches",
    "DATASETS": "spurmem.data.datasets",
    "check_dataset_params": "spurmem.data.datasets",
    "dataset_parameters": "spurmem.data.datasets",
    "load_dataset": "spurmem.data.datasets",
    "SPLITS": "spurmem.data.schema",
    "DataError": "spurmem.data.schema",
    "GroupDataset": "spurmem.data.schema",
    "SplitData": "spurmem.data.schema",
    "group_index": "spurmem.data.schema",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
