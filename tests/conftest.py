import os

import pytest
import torch

# Two cores shared with other work: one thread per test process (environment.md).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
