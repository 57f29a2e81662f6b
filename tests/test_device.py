"""restore.device: thread budgets cover every pool a file uses."""

import torch
from threadpoolctl import threadpool_info

from restore.device import set_threads, single_threaded_blas


def test_set_threads_limits_torch_and_blas_pools(monkeypatch):
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        monkeypatch.setenv("RESTORE_THREADS", "2")
        set_threads()  # the batch's share, from the environment
        assert torch.get_num_threads() == 2
        assert all(pool["num_threads"] == 2 for pool in threadpool_info())
        with single_threaded_blas():
            assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["internal_api"] != "openmp")
    finally:
        set_threads(before)
