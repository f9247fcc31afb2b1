"""Training checkpoints: complete round trips, atomic publishing, crash leftovers ignored."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from agents import checkpoint as ckpt


class TinyPolicy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)

    def save_pretrained(self, path) -> None:
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(Path(path) / "model.safetensors"))
        (Path(path) / "config.json").write_text(json.dumps({"kind": "tiny"}))

    @classmethod
    def from_pretrained(cls, path) -> TinyPolicy:
        m = cls()
        m.load_state_dict(load_file(str(Path(path) / "model.safetensors")))
        return m


def _train_step(model, opt, sched):
    loss = model(torch.randn(8, 4)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


def _setup(seed=0):
    torch.manual_seed(seed)
    model = TinyPolicy()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 / (1 + i))
    return model, opt, sched


def test_round_trip_continues_exactly(tmp_path):
    model, opt, sched = _setup()
    for _ in range(3):
        _train_step(model, opt, sched)
    ckpt.save_checkpoint(tmp_path, 3, model, opt, sched, extra={"best_gold": 0.5})
    expected = [_train_step(model, opt, sched) for _ in range(3)]
    expected_rand = (random.random(), np.random.rand())

    model2, opt2, sched2 = _setup(seed=123)  # different init: everything must come from disk
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "iter-000003"
    model2.load_state_dict(TinyPolicy.from_pretrained(latest).state_dict())
    trainer = ckpt.load_trainer_state(latest, opt2, sched2)
    assert trainer["iteration"] == 3 and trainer["extra"]["best_gold"] == 0.5
    assert sched2.last_epoch == sched.last_epoch - 3
    got = [_train_step(model2, opt2, sched2) for _ in range(3)]
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert (random.random(), np.random.rand()) == expected_rand


def test_links_are_atomic_and_old_checkpoints_pruned(tmp_path):
    model, opt, sched = _setup()
    for it in range(1, 6):
        links = ("latest", "best") if it == 2 else ("latest",)
        ckpt.save_checkpoint(tmp_path, it, model, opt, sched, links=links, keep_last=2)
    names = sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink())
    assert names == ["iter-000002", "iter-000004", "iter-000005"]  # best is pinned
    assert os.readlink(tmp_path / "best") == "iter-000002"
    assert os.readlink(tmp_path / "latest") == "iter-000005"
    TinyPolicy.from_pretrained(tmp_path / "best")


def test_crash_leftovers_do_not_break_loading(tmp_path):
    model, opt, sched = _setup()
    ckpt.save_checkpoint(tmp_path, 1, model, opt, sched)
    # a write killed midway leaves a temp dir (never published) and maybe a stray temp link
    half = tmp_path / ".iter-000002.abcd"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\x00" * 10)
    os.symlink("nowhere", tmp_path / ".latest.999.tmp")
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "iter-000001"
    TinyPolicy.from_pretrained(latest)
    ckpt.save_checkpoint(tmp_path, 2, model, opt, sched)
    assert not half.exists(), "temp dirs of killed writes are cleaned on the next save"
    assert ckpt.latest_checkpoint(tmp_path).name == "iter-000002"


def test_no_pickle_on_disk(tmp_path):
    model, opt, sched = _setup()
    _train_step(model, opt, sched)
    path = ckpt.save_checkpoint(tmp_path, 1, model, opt, sched)
    suffixes = {p.suffix for p in path.iterdir()}
    assert suffixes <= {".safetensors", ".json"}
