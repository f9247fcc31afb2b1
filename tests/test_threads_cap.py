"""agents.common.default_threads: OMP_NUM_THREADS caps torch's threads on a shared machine."""

from __future__ import annotations

import torch

from agents.common import default_threads


def test_omp_num_threads_caps_default_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        default_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "")  # unset or empty: one thread per core
        monkeypatch.setattr("os.cpu_count", lambda: 2)
        default_threads()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
