"""Issue 14 hardening on the policy side: import noise (bitsandbytes only when 8-bit is asked)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import sys
import torch
from cqtml_policy import CQTViTModel, VanillaCNNModel, load_policy  # noqa: F401
import cqtml_policy.io  # noqa: F401
cnn = VanillaCNNModel(cqt_shape=(2, 12, 16))
cnn(torch.rand(1, 2, 12, 16))
vit = CQTViTModel(cqt_shape=(2, 16, 32), patch_size=8)
vit.weights_state_dict()
assert 'bitsandbytes' not in sys.modules, 'bitsandbytes imported without use_8bit'
print('ok')
"""


def test_building_and_saving_policies_does_not_import_bitsandbytes():
    # a fresh interpreter: another test in this process may have imported bitsandbytes
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
    assert "gemm_4bit" not in out.stderr


def test_a_garbage_policy_weights_file_is_named_in_the_error(tmp_path):
    from cqtml_policy import TemporalCNNModel, load_policy

    model = TemporalCNNModel.create_model((2, 24, 40), num_devices=2, distribution_size=4,
                                          device="cpu")
    model.save_pretrained(tmp_path / "p")
    (tmp_path / "p" / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match=r"p/model\.safetensors.*expected policy weights"):
        load_policy(tmp_path / "p")
