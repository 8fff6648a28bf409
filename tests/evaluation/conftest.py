"""One torch thread per test process: these tests run many tiny operations, which OpenMP spin-waiting makes slow
when several test processes share the cores (``pytest -n``)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
