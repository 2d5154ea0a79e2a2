"""Property tests run thousands of ops on tiny tensors: one torch thread is several times
faster there than a thread pool (and the CI machine has 2 cores)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
