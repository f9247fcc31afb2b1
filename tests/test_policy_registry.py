"""One policy registry (cqtml_policy.registry) behind load_policy, the agents' --policy flag and
the SB3 backbone; the 0.1 names (model types and classes) still work."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import cqtml_policy
from cqtml_policy import registry
from cqtml_policy.cnn import TemporalCNNModel

SHAPE = (2, 24, 16)


def test_names_and_aliases_resolve_to_one_kind_each():
    assert registry.list_policies() == ["vit", "cnn", "band-follow", "random", "vit-small", "cnn-bands", "vit-bands", "cnn-pulse", "vit-pulse", "cnn-beat", "vit-beat", "cnn-gain", "vit-gain"]
    for alias, name in [("cqt_vit", "vit"), ("cqt_cnn", "cnn"), ("CNN", "cnn"), ("band_follow", "band-follow"),
                        ("bandfollow", "band-follow"), ("band-follow", "band-follow"), ("random", "random")]:
        assert registry.canonical_name(alias) == name
    with pytest.raises(ValueError, match=r"unknown policy 'lstm'.*cnn \(or cqt_cnn\)"):
        registry.canonical_name("lstm")
    with pytest.raises(ValueError, match="already registered for 'cnn'"):
        registry.register_policy(registry.PolicyEntry("other", "x:Y", True, aliases=("cqt_cnn",)))
    # every class saves a registered name of its own kind, so save -> load_policy never needs a
    # second table (vit-small is a size of the ViT: it saves "vit" and its size in the config)
    for name in registry.list_policies():
        saved = registry.policy_class(name).model_type
        assert registry.policy_class(saved) is registry.policy_class(name)
        assert saved == name or (name, saved) in {("vit-small", "vit"), ("cnn-bands", "cnn"), ("vit-bands", "vit"), ("cnn-pulse", "cnn"), ("vit-pulse", "vit"), ("cnn-beat", "cnn"), ("vit-beat", "vit"), ("cnn-gain", "cnn"), ("vit-gain", "vit")}


def test_agents_make_policy_and_load_policy_share_the_registry(tmp_path):
    from agents.common import make_policy

    torch.manual_seed(0)
    a = make_policy("cqt_cnn", SHAPE, 3, 8, device="cpu")  # a 0.1 model_type works as a flag too
    assert type(a) is TemporalCNNModel and a.num_devices == 3
    assert type(make_policy("bandfollow", SHAPE, 3)).__name__ == "BandFollowPolicy"
    a.save_pretrained(tmp_path / "p")
    assert json.loads((tmp_path / "p" / "config.json").read_text())["model_type"] == "cnn"
    b = make_policy(str(tmp_path / "p"), SHAPE, 3, device="cpu")  # a directory: load_policy
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match=r"neither one of \['vit', 'cnn'"):
        make_policy("no-such-policy", SHAPE, 3)
    # the ViT built by name keeps the agents' default: per-clip relative input channels
    vit = registry.create_policy("vit", (2, 32, 32), num_devices=2, device="cpu")
    assert vit.get_config()["relative_input"] is True


def _as_saved_by_0_1(directory, old_type: str) -> None:
    """Rewrite a saved config the way cqtml-policy 0.1 wrote it (its model_type names)."""
    path = directory / "config.json"
    payload = json.loads(path.read_text())
    payload.update(model_type=old_type, cqtml_policy_version="0.1.0")
    path.write_text(json.dumps(payload))


@pytest.mark.parametrize("old_type", ["cqt_cnn", "cqt_vit", "band_follow"])
def test_checkpoints_saved_with_0_1_type_names_still_load(tmp_path, old_type):
    torch.manual_seed(1)
    name = registry.canonical_name(old_type)
    shape = (2, 32, 32) if name == "vit" else SHAPE
    policy = registry.create_policy(name, shape, num_devices=2, distribution_size=8, device="cpu")
    policy.save_pretrained(tmp_path / "old")
    _as_saved_by_0_1(tmp_path / "old", old_type)
    for loaded in (cqtml_policy.load_policy(tmp_path / "old", device="cpu"),
                   type(policy).from_pretrained(tmp_path / "old")):
        assert type(loaded) is type(policy)
        x = torch.rand(2, *shape)
        torch.testing.assert_close(torch.stack(loaded.log_probs(x)), torch.stack(policy.log_probs(x)))
    with pytest.raises(ValueError, match="not 'random'"):
        registry.policy_class("random").from_pretrained(tmp_path / "old")


def test_0_1_class_names_are_deprecated_aliases_of_the_same_classes():
    from cqtml_policy import cnn, io

    for get in (lambda: cqtml_policy.VanillaCNNModel, lambda: cnn.VanillaCNNModel):
        with pytest.warns(DeprecationWarning, match="TemporalCNNModel"):
            assert get() is TemporalCNNModel
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cqtml_policy.TemporalCNNModel is TemporalCNNModel  # the new name is silent
    assert io.POLICY_TYPES["cqt_cnn"] == io.POLICY_TYPES["cnn"] == "cqtml_policy.cnn:TemporalCNNModel"
    assert io.policy_class("cqt_vit").__name__ == "CQTViTModel"
    assert cqtml_policy.__version__ == "0.2.0"


def test_sb3_policy_rename_keeps_the_old_name():
    pytest.importorskip("stable_baselines3")
    import cqtml_policy.sb3 as sb3
    from cqtml_policy.sb3 import policy as sb3_policy

    for get in (lambda: sb3.CQTViTPolicy, lambda: sb3_policy.CQTViTPolicy):
        with pytest.warns(DeprecationWarning, match="CategoricalSB3Policy"):
            assert get() is sb3.CategoricalSB3Policy
    # the SB3 backbone comes from the same registry (any of its names for vit/cnn)
    model = sb3.build_policy_model("cqt_cnn", SHAPE, 2, 8)
    assert type(model) is TemporalCNNModel and model.get_config()["relative_input"] is True
    with pytest.raises(ValueError, match="backbone must be one of"):
        sb3.build_policy_model("random", SHAPE, 2, 8)
