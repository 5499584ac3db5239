import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shapes():
    from spurmem.data import load_dataset

    return load_dataset("synthetic-shapes", n_train=200, n_val=80, n_test=80, size=12, seed=0)
