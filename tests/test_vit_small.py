"""``vit-small``: the strip ViT with a transformer sized for a CPU budget. Its size is in the
config (so it saves and loads as a ``vit``), per-frame outputs and gradients work, configs
saved before the size existed still load as ViT-tiny, and ``--init-from`` takes it."""

from __future__ import annotations

import json

import pytest
import torch

from cqtml_policy import CQTViTModel, load_policy, registry
from cqtml_policy.vit import resolve_size

SHAPE = (2, 24, 40)
SMALL = {"embed_dim": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_vit(kind: str = "vit-small", **kw):
    """A seeded 3-device, 8-level ViT of registry ``kind`` on a tiny CQT (also used by
    test_vit_band_features)."""
    torch.manual_seed(0)
    return registry.create_policy(kind, SHAPE, num_devices=3, distribution_size=8,
                                  device="cpu", **kw)


_small = tiny_vit


def reload_without(model, folder, *keys):
    """Save ``model``, drop ``keys`` from its saved config (a config written before they
    existed) and load it back."""
    model.save_pretrained(folder)
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in keys:
        del cfg["config"][key]
    cfg_path.write_text(json.dumps(cfg))
    return load_policy(folder, device="cpu").eval()


def test_resolve_size_checks_its_keys() -> None:
    assert resolve_size(None) == {}
    assert resolve_size({"depth": 2, "mlp_ratio": None}) == {"depth": 2}
    with pytest.raises(ValueError, match="unknown ViT size keys"):
        resolve_size({"layers": 2})
    with pytest.raises(ValueError, match="depth must be > 0"):
        resolve_size({"depth": 0})
    with pytest.raises(ValueError, match="divisible by num_heads"):
        resolve_size({"embed_dim": 130, "num_heads": 4})


def test_vit_small_is_the_size_it_says_and_smaller_than_tiny() -> None:
    small = _small()
    assert small.get_config()["size"] == SMALL
    vit = small.backbone.vit
    assert len(vit.blocks) == 4 and vit.embed_dim == 128
    assert vit.blocks[0].attn.num_heads == 4 and vit.blocks[0].mlp.fc1.out_features == 256
    assert small.patch_size == (SHAPE[1], 2)  # full-height strips of 2 frames, as `vit`
    tiny = registry.create_policy("vit", SHAPE, num_devices=3, distribution_size=8, device="cpu")
    assert tiny.get_config()["size"] == {"embed_dim": 192, "depth": 12, "num_heads": 3,
                                         "mlp_ratio": 4.0}
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(small) * 5 < n(tiny)


@pytest.mark.parametrize("patch", [(0, 2), (0, 4)])
def test_vit_small_per_frame_output_and_gradients(patch) -> None:
    model = _small(patch_size=patch)
    x = torch.rand(2, *SHAPE)
    out = model(x)
    assert out.shape == (2, 3, SHAPE[2], 8)
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 3, SHAPE[2]), atol=1e-5)
    assert not torch.allclose(out[:, :, 0], out[:, :, 1], atol=1e-4)  # frames of one token
    with torch.no_grad():
        assert model(torch.rand(1, 2, SHAPE[1], 23)).shape == (1, 3, 23, 8)
    out[:, :, 7, 2].sum().backward()
    for name in ("backbone.vit.patch_embed.proj.weight", "backbone.vit.blocks.3.mlp.fc1.weight",
                 "head.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_vit_small_round_trips_and_old_configs_load_as_tiny(tmp_path) -> None:
    small = _small().eval()
    small.save_pretrained(tmp_path / "small")
    loaded = load_policy(tmp_path / "small", device="cpu").eval()
    assert isinstance(loaded, CQTViTModel) and loaded.get_config()["size"] == SMALL
    x = torch.rand(1, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(loaded(x), small(x), atol=1e-6)
    # written before size and frame_conv were recorded: no keys -> ViT-tiny, same outputs
    torch.manual_seed(1)
    tiny = registry.create_policy("vit", SHAPE, num_devices=3, distribution_size=8,
                                  device="cpu").eval()
    old = reload_without(tiny, tmp_path / "old", "size", "frame_conv")
    assert len(old.backbone.vit.blocks) == 12 and old.backbone.embed_dim == 192
    with torch.no_grad():
        assert torch.allclose(old(x), tiny(x), atol=1e-6)


def test_init_from_accepts_a_vit_small_checkpoint_and_names_a_size_mismatch(tmp_path) -> None:
    from agents.checkpoint import init_policy_from

    src = _small()
    src.save_pretrained(tmp_path / "sft")
    dst = registry.create_policy("vit-small", SHAPE, num_devices=3, distribution_size=8,
                                 device="cpu")
    init_policy_from(dst, tmp_path / "sft", "vit-small")
    for (k, a), b in zip(dst.state_dict().items(), src.state_dict().values()):
        assert torch.equal(a, b), k
    tiny = registry.create_policy("vit", SHAPE, num_devices=3, distribution_size=8, device="cpu")
    with pytest.raises(ValueError, match="shape mismatch|missing tensors|unexpected tensors"):
        init_policy_from(tiny, tmp_path / "sft", "vit")
    cnn = registry.create_policy("cnn", SHAPE, num_devices=3, distribution_size=8, device="cpu")
    with pytest.raises(ValueError, match="holds a 'vit' policy"):
        init_policy_from(cnn, tmp_path / "sft", "cnn")


def test_frame_conv_gives_per_frame_features_that_mix_across_token_edges() -> None:
    """With ``frame_conv`` the head reads one feature per frame; once the mixing conv is
    non-zero, a change inside one token reaches frames of the neighbouring token (kernel 5,
    strips of 4 frames), and gradients reach every part of the temporal stage."""
    model = _small(patch_size=(0, 4), frame_conv=5).eval()
    assert model.head.frames_per_column == 1 and model.get_config()["frame_conv"] == 5
    x = torch.rand(2, *SHAPE)
    out = model(x)
    assert out.shape == (2, 3, SHAPE[2], 8)
    with torch.no_grad():
        assert model(torch.rand(1, 2, SHAPE[1], 23)).shape == (1, 3, 23, 8)
    out[:, :, 9, 1].sum().backward()
    assert model.frames.mix.weight.grad.abs().sum() > 0  # zero-init mix: its own grad first
    assert model.frames.offset.grad.abs().sum() > 0
    with torch.no_grad():
        torch.nn.init.normal_(model.frames.mix.weight, std=0.2)
        frames = model.frames(torch.zeros(1, model.backbone.embed_dim, 1, 10), 40)
        bumped = torch.zeros(1, model.backbone.embed_dim, 1, 10)
        bumped[0, :, 0, 2] = torch.randn(model.backbone.embed_dim)  # token 2 = frames 8..11
        moved = (model.frames(bumped, 40) - frames).abs().sum(dim=(0, 1, 2))
    assert moved[8:12].min() > 0 and moved[6] > 0 and moved[13] > 0  # neighbours' frames too
    assert moved[:5].max() == 0 and moved[15:].max() == 0  # beyond the kernel: untouched
    with pytest.raises(ValueError, match="odd kernel"):
        _small(frame_conv=4)


def test_frame_conv_round_trips(tmp_path) -> None:
    model = _small(patch_size=(0, 4), frame_conv=3).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = load_policy(tmp_path / "m", device="cpu").eval()
    assert loaded.frame_conv == 3 and loaded.patch_size == (SHAPE[1], 4)
    x = torch.rand(1, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
