"""CQTViTModel: shapes for any clip length, the un-patchified head, timm pretrained adaptation,
8-bit and gradient checkpointing on the CPU, save/load."""

from __future__ import annotations

import json

import pytest
import torch

from cqtml_policy import CQTViTModel, LogProbabilityHead, PolicyModel, load_policy

SMALL = (2, 24, 44)  # small CQT for the slower checks: a 2 x 3 patch grid at patch 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vit() -> CQTViTModel:
    torch.manual_seed(0)
    return CQTViTModel.create_model((2, 84, 216), device="cpu").eval()


@pytest.fixture(scope="module")
def small_vit() -> CQTViTModel:
    torch.manual_seed(1)
    return CQTViTModel.create_model(SMALL, num_devices=2, distribution_size=8, device="cpu").eval()


def test_output_shape_and_normalisation(vit: CQTViTModel) -> None:
    with torch.no_grad():
        out = vit(torch.rand(2, 2, 84, 216))
    assert out.shape == (2, 4, 216, 32)
    assert out.dtype == torch.float32
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 4, 216), atol=1e-5)
    assert isinstance(vit, PolicyModel)


@pytest.mark.parametrize(("n_bins", "frames"), [(84, 44), (84, 100), (84, 300), (60, 216)])
def test_frame_count_follows_the_input(vit: CQTViTModel, n_bins: int, frames: int) -> None:
    with torch.no_grad():
        out = vit(torch.rand(1, 2, n_bins, frames))
    assert out.shape == (1, 4, frames, 32)
    acts = vit.generate_actions(torch.rand(1, 2, n_bins, frames), num_actions_per_state=2)
    assert [a.shape for a in acts[0]] == [(4, frames)] * 2


def test_head_unpatchifies_time_per_column() -> None:
    """Frame t reads only column t // P: a per-frame map, not an interpolated pooled vector."""
    torch.manual_seed(0)
    head = LogProbabilityHead(16, num_devices=3, distribution_size=5, frames_per_column=4)
    grid = torch.randn(1, 16, 2, 6)
    base = head(grid, num_frames=22)
    assert base.shape == (1, 3, 22, 5)
    bumped = grid.clone()
    bumped[..., 2] += torch.randn(16, 2)  # column 2 covers frames 8..11
    changed = (head(bumped, num_frames=22) - base).abs().amax(dim=(0, 1, 3)) > 1e-6
    assert changed.nonzero().flatten().tolist() == [8, 9, 10, 11]
    # frames within one column get their own distributions
    assert not torch.allclose(base[0, :, 8], base[0, :, 9])
    with pytest.raises(ValueError, match="num_frames"):
        head(grid, num_frames=25)


def test_ordinal_head_starts_as_a_soft_bump_and_plain_logits_are_available() -> None:
    torch.manual_seed(0)
    grid = torch.randn(2, 16, 3, 5)
    probs = LogProbabilityHead(16, 2, 32, frames_per_column=2)(grid).exp()  # [2, 2, 10, 32]
    levels = torch.linspace(0, 1, 32)
    mean = (probs * levels).sum(-1)
    spread = (probs * (levels - mean[..., None]) ** 2).sum(-1).sqrt()
    assert (mean - 0.5).abs().max() < 0.25  # a bump around mid-range ...
    assert spread.median() < 0.22 and spread.min() > 0.05  # ... not uniform noise (std 0.29)
    plain = LogProbabilityHead(16, 2, 32, frames_per_column=2, ordinal=False)
    out = plain(grid)
    assert out.shape == (2, 2, 10, 32) and torch.allclose(out.exp().sum(-1), torch.ones(2, 2, 10))


def test_device_auto_and_half_precision_on_cpu() -> None:
    auto = CQTViTModel.create_model(SMALL, num_devices=2, distribution_size=8)
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.warns(UserWarning, match="half"):
        half = CQTViTModel.create_model(SMALL, device="cpu", use_half_precision=True)
    assert half.use_half_precision is False
    assert all(p.dtype == torch.float32 for p in half.parameters())


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"\(2, n_bins, T\)"):
        CQTViTModel.create_model((84, 216), device="cpu")
    with pytest.raises(FileNotFoundError, match="local file"):
        CQTViTModel.create_model(SMALL, device="cpu", pretrained="/nonexistent/vit.safetensors")


def test_pretrained_local_weights_are_adapted(tmp_path) -> None:
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(3)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False)  # RGB, 224 x 224
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / "vit_tiny_rgb224.safetensors"
    save_file(state, str(path))

    model = CQTViTModel.create_model((2, 84, 216), device="cpu", pretrained=path)
    vit = model.backbone.vit
    # input conv: 3 -> 2 channels the timm way (repeat, slice, rescale by 3 / in_chans)
    assert vit.patch_embed.proj.weight.shape == (192, 2, 16, 16)
    assert torch.allclose(
        vit.patch_embed.proj.weight, state["patch_embed.proj.weight"][:, :2] * 1.5
    )
    # position embedding: 14 x 14 grid resampled to the CQT's 6 x 14 patch grid
    expected = resample_abs_pos_embed(state["pos_embed"], new_size=(6, 14), num_prefix_tokens=1)
    assert vit.pos_embed.shape == (1, 1 + 6 * 14, 192)
    assert torch.allclose(vit.pos_embed, expected, atol=1e-6)
    # transformer weights loaded unchanged; a fresh model differs
    assert torch.equal(vit.blocks[5].mlp.fc1.weight, state["blocks.5.mlp.fc1.weight"])
    fresh = CQTViTModel.create_model((2, 84, 216), device="cpu")
    assert not torch.equal(
        fresh.backbone.vit.blocks[5].mlp.fc1.weight, state["blocks.5.mlp.fc1.weight"]
    )


def test_8bit_backbone_forward_backward_and_save(small_vit: CQTViTModel, tmp_path) -> None:
    bnb = pytest.importorskip("bitsandbytes")
    from cqtml_policy.int8 import linear_weight_bytes

    small_vit.save_pretrained(tmp_path / "fp32")
    q = CQTViTModel.from_pretrained(tmp_path / "fp32", device="cpu", use_8bit=True)
    linears = [m for m in q.backbone.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, bnb.nn.Linear8bitLt) for m in linears)
    assert all(m.weight.dtype == torch.int8 for m in linears)
    assert not isinstance(q.head, bnb.nn.Linear8bitLt) and q.head.weight.dtype == torch.float32
    assert linear_weight_bytes(small_vit.backbone) / linear_weight_bytes(q.backbone) > 3.5

    x = torch.rand(2, *SMALL)
    with torch.no_grad():
        ref, out = small_vit(x), q(x)
    assert (out.exp() - ref.exp()).abs().max() < 0.05  # quantisation noise only

    actions = q.generate_actions(x, num_actions_per_state=2)
    q.get_log_probabilities(x, actions).sum().backward()
    assert q.head.weight.grad is not None and q.head.weight.grad.abs().sum() > 0
    patch = q.backbone.vit.patch_embed.proj.weight  # gradients flow through the int8 layers
    assert patch.grad is not None and patch.grad.abs().sum() > 0

    q.save_pretrained(tmp_path / "int8")
    config = json.loads((tmp_path / "int8" / "config.json").read_text())
    assert config["config"]["use_8bit"] is True
    again = CQTViTModel.from_pretrained(tmp_path / "int8", device="cpu")
    assert again.use_8bit
    with torch.no_grad():
        assert torch.allclose(again(x), out, atol=1e-5)


def test_gradient_checkpointing_matches_plain_backward(small_vit: CQTViTModel, tmp_path) -> None:
    small_vit.save_pretrained(tmp_path)
    ckpt = CQTViTModel.from_pretrained(tmp_path, device="cpu", gradient_checkpointing=True)
    assert ckpt.backbone.vit.grad_checkpointing and ckpt.get_config()["gradient_checkpointing"]
    plain = CQTViTModel.from_pretrained(tmp_path, device="cpu")
    x = torch.rand(2, *SMALL)
    actions = plain.generate_actions(x, num_actions_per_state=3)
    for m in (plain, ckpt):
        m.train()
        m.get_log_probabilities(x, actions).mean().backward()
    g_plain = plain.backbone.vit.blocks[0].attn.qkv.weight.grad
    g_ckpt = ckpt.backbone.vit.blocks[0].attn.qkv.weight.grad
    assert g_plain is not None and g_ckpt is not None and g_plain.abs().sum() > 0
    assert torch.allclose(g_plain, g_ckpt, atol=1e-6, rtol=1e-4)


def test_save_load_round_trip(small_vit: CQTViTModel, tmp_path) -> None:
    small_vit.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    x = torch.rand(3, *SMALL)
    for loaded in (
        CQTViTModel.from_pretrained(tmp_path, device="cpu"),
        load_policy(tmp_path, device="cpu"),
    ):
        assert type(loaded) is CQTViTModel
        assert loaded.get_config() == small_vit.get_config()
        with torch.no_grad():
            assert torch.equal(loaded.eval()(x), small_vit(x))


def test_relative_input_doubles_the_channels_round_trips_and_sees_level_free_structure(tmp_path) -> None:
    torch.manual_seed(0)
    model = CQTViTModel.create_model(SMALL, device="cpu", relative_input=True).eval()
    assert model.backbone.vit.patch_embed.proj.weight.shape[1] == 4
    x = torch.rand(2, *SMALL) * 0.5 + 0.3
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 4, SMALL[-1], 32)
        # zero the raw channels' conv weights: what is left sees only the relative picture,
        # which a uniformly quieter copy of the clip shares exactly
        model.backbone.vit.patch_embed.proj.weight[:, :2] = 0
        assert torch.allclose(model(x), model(x - 0.2), atol=1e-5)
        assert not torch.allclose(model(x), model(x**3), atol=1e-3)
    model.save_pretrained(tmp_path / "rel")
    loaded = CQTViTModel.from_pretrained(tmp_path / "rel", device="cpu").eval()
    assert loaded.relative_input and loaded.get_config()["relative_input"] is True
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_checkpoints_saved_before_relative_input_load_without_it(small_vit: CQTViTModel, tmp_path) -> None:
    import json

    small_vit.save_pretrained(tmp_path)
    cfg_path = tmp_path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["config"].pop("relative_input")  # an older config has no such key
    cfg_path.write_text(json.dumps(cfg))
    loaded = CQTViTModel.from_pretrained(tmp_path, device="cpu")
    assert loaded.relative_input is False
    assert loaded.backbone.vit.patch_embed.proj.weight.shape[1] == 2
