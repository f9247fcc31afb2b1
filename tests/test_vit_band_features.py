"""``vit-bands``: ``vit-small`` with each device band's level / auto-gain / flux curves
(``inputs.BandFeatures``) added to its patch embeddings. The curves reach the tokens at frame
precision, the model saves and loads as a ``vit`` with ``band_features`` in its config, ViT
configs saved before the key load without them, and ``--init-from`` takes it."""

from __future__ import annotations

import functools

import pytest
import torch
from test_vit_small import SHAPE, reload_without, tiny_vit

from cqtml_policy import CQTViTModel, load_policy, registry
from cqtml_policy.contract import device_bands
from cqtml_policy.inputs import BandFeatures

pytestmark = pytest.mark.usefixtures("one_torch_thread")


_bands = functools.partial(tiny_vit, "vit-bands")


def test_vit_bands_is_vit_small_plus_band_inputs() -> None:
    model = _bands()
    cfg = model.get_config()
    assert cfg["patch_size"] == [SHAPE[1], 8] and cfg["frame_conv"] == 9
    assert cfg["frame_layers"] == 3 and cfg["frame_context"] is True
    small = tiny_vit(patch_size=(0, 8), frame_conv=9, frame_layers=3, frame_context=True)
    assert cfg["band_features"] is True and small.get_config()["band_features"] is False
    assert cfg["size"] == small.get_config()["size"]
    # the only new weights: 5 curves x 3 devices x 8 frames per token -> the token width, and
    # the frame stage's projection of each frame's 5 x 3 curves
    extra = set(model.state_dict()) - set(small.state_dict())
    assert extra == {"backbone.band_embed.weight", "backbone.band_embed.bias",
                     "frames.extra.weight", "frames.extra.bias"}
    assert model.backbone.band_embed.weight.shape == (128, BandFeatures.per_band * 3 * 8)
    assert model.frames.extra.weight.shape == (128, BandFeatures.per_band * 3, 1)
    assert set(small.state_dict()) <= set(model.state_dict())


def test_band_curves_reach_their_own_token_at_frame_precision() -> None:
    """A note entering one device band changes the band embedding of exactly the token that
    holds its frame, and which of the token's two frames it is matters."""
    model = _bands().eval()
    bb = model.backbone
    lo, hi = device_bands(SHAPE[1], 3)[1]
    quiet = torch.full((1, *SHAPE), 0.1)
    captured = []
    hook = bb.band_embed.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    with torch.no_grad():
        model(quiet)
        for frame in (20, 21):
            x = quiet.clone()
            x[0, :, lo:hi, frame] = 0.9  # a one-frame hit in band 1
            model(x)
    hook.remove()
    base, at20, at21 = captured
    per = model.patch_size[1]
    moved20 = (at20 - base).abs().sum(-1)[0]  # [W] tokens
    assert moved20.shape == (SHAPE[2] // per,)
    # the hit changes frame 20's curves (level) and frame 21's (its relative flux drops back),
    # both in token 20 // per; other tokens only through the clip-level auto-gain
    assert int(moved20.argmax()) == 20 // per == 21 // per
    assert not torch.allclose(at20[0, 20 // per], at21[0, 20 // per], atol=1e-5)  # which frame


def test_vit_bands_output_gradients_and_odd_lengths() -> None:
    model = _bands()
    x = torch.rand(2, *SHAPE)
    out = model(x)
    assert out.shape == (2, 3, SHAPE[2], 8)
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 3, SHAPE[2]), atol=1e-5)
    with torch.no_grad():
        assert model(torch.rand(1, 2, SHAPE[1], 23)).shape == (1, 3, 23, 8)  # padded token
    out[:, :, 7, 2].sum().backward()
    for name in ("backbone.band_embed.weight", "backbone.vit.patch_embed.proj.weight",
                 "backbone.vit.blocks.3.mlp.fc1.weight", "head.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_vit_bands_with_gradient_checkpointing_gives_the_same_numbers() -> None:
    torch.manual_seed(0)
    plain = _bands()
    ckpt = _bands(gradient_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(2, *SHAPE)
    a, b = plain(x), ckpt(x)
    assert torch.allclose(a, b, atol=1e-6)
    a.sum().backward()
    b.sum().backward()
    ga, gb = plain.backbone.band_embed.weight.grad, ckpt.backbone.band_embed.weight.grad
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-3)


def test_vit_bands_round_trips_and_old_vit_configs_load_without_bands(tmp_path) -> None:
    from agents.checkpoint import init_policy_from

    model = _bands().eval()
    model.save_pretrained(tmp_path / "vb")
    loaded = load_policy(tmp_path / "vb", device="cpu").eval()
    assert isinstance(loaded, CQTViTModel) and loaded.band_features
    x = torch.rand(1, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
    fresh = registry.create_policy("vit-bands", SHAPE, num_devices=3, distribution_size=8,
                                   device="cpu").eval()
    init_policy_from(fresh, tmp_path / "vb", "vit-bands")
    with torch.no_grad():
        assert torch.allclose(fresh(x), model(x), atol=1e-6)
    small = registry.create_policy("vit-small", SHAPE, num_devices=3, distribution_size=8,
                                   device="cpu")
    with pytest.raises(ValueError, match="unexpected tensors"):
        init_policy_from(small, tmp_path / "vb", "vit-small")
    # a ViT saved before band_features existed: no key -> no band embedding, same outputs
    torch.manual_seed(1)
    old = registry.create_policy("vit-small", SHAPE, num_devices=3, distribution_size=8,
                                 device="cpu").eval()
    back = reload_without(old, tmp_path / "old", "band_features")
    assert back.backbone.band_embed is None
    with torch.no_grad():
        assert torch.allclose(back(x), old(x), atol=1e-6)


def test_with_frame_conv_the_band_curves_also_enter_each_frame() -> None:
    """``frame_conv`` + band features: the frame stage adds the curves of each frame itself
    (zero-initialised, so it starts as plain ``frame_conv``); once trained, a one-frame hit
    changes that frame's features more than its token neighbour's, beyond the conv's reach
    nothing changes through this path, and a FrameConv built with extra inputs refuses to run
    without them."""
    model = _bands(patch_size=(0, 4), frame_conv=3).eval()
    frames = model.frames
    assert frames.extra is not None and frames.extra.in_channels == BandFeatures.per_band * 3
    assert model.get_config()["frame_conv"] == 3 and model.get_config()["band_features"]
    grid = torch.zeros(1, model.backbone.embed_dim, 1, SHAPE[2] // 4)
    curves = torch.zeros(1, frames.extra.in_channels, SHAPE[2])
    with torch.no_grad():
        assert torch.equal(frames(grid, SHAPE[2], curves), frames(grid, SHAPE[2], curves + 1))
        torch.nn.init.normal_(frames.extra.weight, std=0.2)
        torch.nn.init.normal_(frames.mix.weight, std=0.2)
        hit = curves.clone()
        hit[0, :, 17] = 1.0  # frame 17: the second frame of token 4 (frames 16..19)
        moved = (frames(grid, SHAPE[2], hit) - frames(grid, SHAPE[2], curves)).abs().sum((0, 1, 2))
    assert int(moved.argmax()) == 17 and moved[17] > moved[18] > 0 and moved[16] > 0
    assert moved[:16].max() == 0 and moved[19:].max() == 0  # kernel 3: frames 16..18 only
    with pytest.raises(ValueError, match="extra inputs"):
        frames(grid, SHAPE[2])
    out = model(torch.rand(2, *SHAPE))
    assert out.shape == (2, 3, SHAPE[2], 8)
    out[:, :, 5].sum().backward()
    assert frames.extra.weight.grad.abs().sum() > 0


def test_frame_layers_widen_the_frame_stage_by_dilation_and_start_as_one_layer() -> None:
    from cqtml_policy.vit import FrameConv

    torch.manual_seed(0)
    one, three = FrameConv(6, 1, 9), FrameConv(6, 1, 9, layers=3)
    three.load_state_dict(one.state_dict(), strict=False)  # the extra blocks start as identity
    grid = torch.randn(1, 6, 1, 80)
    torch.testing.assert_close(three(grid, 80), one(grid, 80))
    for block in three.more:  # trained weights: every block now mixes
        torch.nn.init.normal_(block.mix.weight)
    torch.nn.init.normal_(three.mix.weight)
    # receptive field: kernel 9 at dilations 1, 2, 4 reaches 4 + 8 + 16 = 28 frames each way
    x = grid.clone().requires_grad_(True)
    three(x, 80)[..., 40].sum().backward()
    reach = x.grad.abs().sum(dim=(0, 1, 2)) > 0
    assert reach.nonzero().flatten().tolist() == list(range(40 - 28, 40 + 29))
    with pytest.raises(ValueError, match="frame_layers"):
        FrameConv(6, 1, 9, layers=0)
    model = _bands(frame_layers=2)
    assert model.get_config()["frame_layers"] == 2 and len(model.frames.more) == 1
    assert _bands(frame_layers=1).get_config()["frame_layers"] == 1


def test_frame_context_gives_each_frame_the_clip_statistics_and_starts_as_identity() -> None:
    from cqtml_policy.vit import FrameConv

    torch.manual_seed(0)
    plain, ctx = FrameConv(6, 1, 3), FrameConv(6, 1, 3, context=True)
    ctx.load_state_dict(plain.state_dict(), strict=False)
    grid = torch.randn(2, 6, 2, 50)  # two rows: statistics are per row
    torch.testing.assert_close(ctx(grid, 50), plain(grid, 50))
    torch.nn.init.normal_(ctx.context.proj.weight, std=0.1)
    torch.nn.init.normal_(ctx.mix.weight)
    x = grid.clone().requires_grad_(True)
    ctx(x, 50)[0, :, 0, 0].sum().backward()
    # frame 0 of row 0 now hears frame 49 of its own row (kernel 3 alone reaches frame 1),
    # and nothing of the other row or the other clip
    assert x.grad[0, :, 0, 49].abs().sum() > 0
    assert x.grad[0, :, 1].abs().sum() == 0 and x.grad[1].abs().sum() == 0
    model = _bands(frame_context=True)
    assert model.get_config()["frame_context"] is True
    with pytest.raises(ValueError, match="need frame_conv"):
        _bands(frame_conv=0, frame_context=True)
