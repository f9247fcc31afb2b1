"""Issue 14 "Also": a bad safetensors file names the file and what it should have held."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from cqtml_env.reward.model import RewardModel, RewardModelConfig
from cqtml_env.safetensors_io import SafetensorsFileError, load_safetensors


@pytest.fixture()
def saved_model(tmp_path):
    return RewardModel(RewardModelConfig(hidden=4)).save_pretrained(tmp_path / "rm")


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda b: b[: len(b) // 2],  # truncated data
        lambda b: b[:6],  # truncated header length
        lambda b: os.urandom(len(b)),  # garbage
        lambda b: b"",  # empty
        lambda b: (1 << 60).to_bytes(8, "little") + b[8:],  # header length beyond the file
    ],
    ids=["half", "header", "garbage", "empty", "huge_header"],
)
def test_corrupt_reward_weights_name_file_and_content(saved_model, corrupt):
    saved_model.write_bytes(corrupt(saved_model.read_bytes()))
    with pytest.raises(SafetensorsFileError) as info:
        RewardModel.from_pretrained(saved_model.parent)
    msg = str(info.value)
    assert str(saved_model) in msg and "expected reward model weights" in msg


def test_reward_weights_of_another_shape_name_file(saved_model, tmp_path):
    other = RewardModel(RewardModelConfig(hidden=6)).save_pretrained(tmp_path / "other")
    saved_model.write_bytes(other.read_bytes())
    with pytest.raises(SafetensorsFileError, match="do not match the reward model of model.json"):
        RewardModel.from_pretrained(saved_model.parent)


def test_bad_reward_config_names_file(saved_model):
    cfg = saved_model.with_suffix(".json")
    cfg.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match=r"model\.json: not a reward model config"):
        RewardModel.from_pretrained(saved_model.parent)


def test_load_safetensors_reads_good_and_names_bad(tmp_path):
    good = tmp_path / "a.safetensors"
    save_file({"x": np.arange(3, dtype=np.int32)}, str(good))
    assert load_safetensors(good, expected="x").keys() == {"x"}
    assert load_safetensors(good, expected="x", backend="torch")["x"].tolist() == [0, 1, 2]
    with pytest.raises(SafetensorsFileError, match=r"b\.safetensors: missing \(expected a thing"):
        load_safetensors(tmp_path / "b.safetensors", expected="a thing")
    bad = tmp_path / "c.safetensors"
    bad.write_bytes(b"not safetensors at all")
    with pytest.raises(SafetensorsFileError, match=r"c\.safetensors: not a readable .*22 bytes"):
        load_safetensors(bad, expected="a thing")


def test_reward_eval_cli_exit_2_on_bad_weights(saved_model, capsys):
    from cqtml_env.cli.reward import main

    saved_model.write_bytes(b"\0" * 10)
    assert main(["eval", "--model", str(saved_model.parent)]) == 2
    err = capsys.readouterr().err
    assert str(saved_model) in err and "reward model weights" in err and "Traceback" not in err
