"""agents/grpo.py --init-from: GRPO starts from a saved policy's weights (an SFT warm start or
another run's checkpoint), that policy is the KL reference with --beta > 0, and a checkpoint
that does not fit the run is a clear error naming the file and what was expected."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_agents import tiny

from agents import grpo
from agents.checkpoint import load_policy_weights
from agents.common import make_policy
from cqtml_env import CQTProcessor


def _saved_policy(path, num_devices=4, seed=99):
    """A CNN policy for tiny()'s shapes, initialised from another seed than the run's, saved."""
    torch.manual_seed(seed)
    shape = tuple(CQTProcessor(max_duration=1.0).shape)
    policy = make_policy("cnn", shape, num_devices, 32, device="cpu")
    policy.save_pretrained(path)
    return {k: v.clone() for k, v in policy.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k].float(), b[k].float()) for k in a)


def test_load_policy_weights_reads_the_saved_format(tmp_path):
    want = _saved_policy(tmp_path / "sft")
    name, config, state = load_policy_weights(tmp_path / "sft")
    assert name == "cnn" and config["num_devices"] == 4
    assert _same(state, want)


def test_init_from_starts_from_the_checkpoint_and_uses_it_as_reference(tmp_path):
    init = _saved_policy(tmp_path / "sft")
    # lr 0: the final weights are the initial weights, so they must be the file's
    grpo.train(tiny(tmp_path / "run", iterations=1, learning_rate=0.0, beta=0.04, eval_every=0,
                    checkpoint_every=0, image_every=0, init_from=str(tmp_path / "sft")))
    final = tmp_path / "run" / "checkpoints" / "final"
    assert _same(load_file(str(final / "model.safetensors")), init)
    assert _same(load_file(str(final / "reference.safetensors")), init)
    assert json.loads((tmp_path / "run" / "args.json").read_text())["init_from"] == str(tmp_path / "sft")


def test_kl_reference_is_the_init_not_the_seeds_random_init(tmp_path):
    init = _saved_policy(tmp_path / "sft")
    grpo.train(tiny(tmp_path / "run", iterations=2, beta=0.04, eval_every=0, checkpoint_every=0,
                    image_every=0, init_from=str(tmp_path / "sft")))
    final = tmp_path / "run" / "checkpoints" / "final"
    assert _same(load_file(str(final / "reference.safetensors")), init)  # frozen at the init
    assert not _same(load_file(str(final / "model.safetensors")), init)  # the policy trained


def test_init_from_a_run_directory_takes_its_latest_checkpoint(tmp_path):
    grpo.train(tiny(tmp_path / "a", iterations=2, eval_every=0, checkpoint_every=0, image_every=0))
    want = load_file(str(tmp_path / "a" / "checkpoints" / "latest" / "model.safetensors"))
    _, _, state = load_policy_weights(tmp_path / "a")
    assert _same(state, want)


def test_init_from_a_different_kind_names_the_file_and_the_expected_policy(tmp_path):
    _saved_policy(tmp_path / "sft")
    cfg = json.loads((tmp_path / "sft" / "config.json").read_text())
    cfg["model_type"] = "vit"
    (tmp_path / "sft" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"(?s)sft.*'vit' policy.*'cnn' policy"):
        grpo.train(tiny(tmp_path / "run", iterations=1, init_from=str(tmp_path / "sft")))


def test_init_from_a_shape_mismatch_names_the_file_and_the_shapes(tmp_path):
    _saved_policy(tmp_path / "six", num_devices=6)
    with pytest.raises(ValueError, match=r"(?s)six/model.safetensors.*shape mismatch.*expected"):
        grpo.train(tiny(tmp_path / "run", iterations=1, init_from=str(tmp_path / "six")))


def test_init_from_a_folder_without_a_policy_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a saved policy"):
        grpo.train(tiny(tmp_path / "run", iterations=1, init_from=str(tmp_path / "empty")))
    shutil.rmtree(tmp_path / "empty")


def test_init_from_a_non_finite_checkpoint_is_refused(tmp_path):
    from safetensors.torch import save_file

    state = _saved_policy(tmp_path / "sft")
    k = next(k for k, v in state.items() if v.is_floating_point())
    state[k].view(-1)[0] = float("inf")
    save_file({n: v.contiguous() for n, v in state.items()}, str(tmp_path / "sft" / "model.safetensors"))
    with pytest.raises(ValueError, match=r"(?s)sft/model.safetensors.*non-finite"):
        grpo.train(tiny(tmp_path / "run", iterations=1, init_from=str(tmp_path / "sft")))
