"""Time-resolving ViT tokens: rectangular patches and full-height strips (the registry's ``vit``
default), one distribution per frame, gradients through, and 0.1's square-patch checkpoints
still loading."""

from __future__ import annotations

import json

import pytest
import torch

from cqtml_policy import CQTViTModel, load_policy, registry
from cqtml_policy.vit import resolve_patch_size

SHAPE = (2, 24, 40)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_resolve_patch_size() -> None:
    assert resolve_patch_size(16, 84) == (16, 16)
    assert resolve_patch_size((0, 2), 84) == (84, 2)
    assert resolve_patch_size([6, 4], 84) == (6, 4)
    for bad in ((0, 0), (-1, 2), "x", (1, 2, 3)):
        with pytest.raises(ValueError, match="patch_size"):
            resolve_patch_size(bad, 84)


def test_registry_vit_tokens_cover_at_most_four_frames() -> None:
    torch.manual_seed(0)
    vit = registry.create_policy("vit", SHAPE, num_devices=3, distribution_size=8, device="cpu")
    bins, frames = vit.patch_size
    assert frames <= 4 and bins == SHAPE[1]  # full-height strips
    assert vit.get_config()["patch_size"] == [bins, frames]
    assert vit.backbone.grid_shape(SHAPE[1], SHAPE[2])[1:] == (1, -(-SHAPE[2] // frames))
    assert vit.head.frames_per_column == frames
    # the patch embedding really is a (bins x frames) convolution with stride = its size
    proj = vit.backbone.vit.patch_embed.proj
    assert tuple(proj.kernel_size) == (bins, frames) and tuple(proj.stride) == (bins, frames)


@pytest.mark.parametrize("patch", [(0, 2), (6, 4), (8, 1)])
def test_shapes_per_frame_output_and_gradients(patch) -> None:
    torch.manual_seed(0)
    vit = CQTViTModel.create_model(SHAPE, num_devices=3, distribution_size=8, patch_size=patch,
                                   device="cpu", relative_input=True)
    x = torch.rand(2, *SHAPE)
    out = vit(x)
    assert out.shape == (2, 3, SHAPE[2], 8)
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 3, SHAPE[2]), atol=1e-5)
    w = vit.patch_size[1]
    if w > 1:  # frames inside one token get their own distributions
        assert not torch.allclose(out[:, :, 0], out[:, :, 1], atol=1e-4)
    for frames in (17, 63):  # other clip lengths: still one distribution per frame
        with torch.no_grad():
            assert vit(torch.rand(1, 2, SHAPE[1], frames)).shape == (1, 3, frames, 8)
    out[:, :, 5, 3].sum().backward()
    for name in ("backbone.vit.patch_embed.proj.weight", "backbone.vit.blocks.0.attn.qkv.weight",
                 "head.weight"):
        grad = dict(vit.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_onset_moves_the_output_at_frame_precision() -> None:
    """A token covers 2 frames: moving an onset by 2 frames changes which token sees it, so
    the untrained strip ViT's output at the onset differs (a 16-frame patch could not tell)."""
    torch.manual_seed(0)
    vit = registry.create_policy("vit", SHAPE, num_devices=2, distribution_size=8, device="cpu")
    vit.eval()
    base = torch.zeros(1, *SHAPE)
    a, b = base.clone(), base.clone()
    a[..., 10:] = 1.0
    b[..., 12:] = 1.0
    with torch.no_grad():
        oa, ob = vit(a), vit(b)
    assert not torch.allclose(oa[:, :, 10:12], ob[:, :, 10:12], atol=1e-4)


def test_square_patch_checkpoints_still_load(tmp_path) -> None:
    torch.manual_seed(0)
    old = CQTViTModel.create_model(SHAPE, num_devices=2, distribution_size=8, patch_size=8,
                                   device="cpu").eval()
    old.save_pretrained(tmp_path / "old")
    cfg_path = tmp_path / "old" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["config"]["patch_size"] = 8  # as cqtml-policy 0.1 wrote it: one int
    cfg_path.write_text(json.dumps(cfg))
    loaded = load_policy(tmp_path / "old", device="cpu").eval()
    assert loaded.patch_size == (8, 8) and loaded.head.frames_per_column == 8
    x = torch.rand(1, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(loaded(x), old(x), atol=1e-6)
    strip = registry.create_policy("vit", SHAPE, num_devices=2, distribution_size=8, device="cpu")
    strip.save_pretrained(tmp_path / "strip")
    again = load_policy(tmp_path / "strip", device="cpu")
    assert again.patch_size == strip.patch_size
