"""A tidy table of a dataset's groups: one row per split x group with counts and roles."""

from __future__ import annotations

import pandas as pd

from spurmem.data.schema import GroupDataset


def group_count_table(ds: GroupDataset) -> pd.DataFrame:
    """Columns: split, group, name, y, a, class_name, attr_name, count, fraction (of the split),
    role (majority/minority from training counts; ``absent`` for a group with no training examples)."""
    majority, minority = set(ds.majority_groups), set(ds.minority_groups)
    rows = []
    for split in ds.splits:
        counts = ds.group_counts(split)
        total = int(counts.sum())
        for g in range(ds.n_groups):
            y, a = ds.group_y(g), ds.group_a(g)
            role = "majority" if g in majority else "minority" if g in minority else "absent"
            rows.append(dict(
                split=split, group=g, name=ds.group_names[g], y=y, a=a, class_name=ds.class_names[y],
                attr_name=ds.attr_names[a], count=int(counts[g]), fraction=counts[g] / total, role=role,
            ))
    return pd.DataFrame(rows)
