"""The shared categorical logic (CategoricalPolicy): sampling, temperature, log-probabilities,
input validation, batching — exercised through the small CNN policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cqtml_policy import (
    BandFollowPolicy,
    CategoricalPolicy,
    CQTViTModel,
    PolicyModel,
    RandomPolicy,
    TemporalCNNModel,
)

D, K, F, T = 3, 8, 24, 40


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cnn() -> TemporalCNNModel:
    torch.manual_seed(0)
    return TemporalCNNModel.create_model((2, F, T), num_devices=D, distribution_size=K, device="cpu")


@pytest.fixture
def states() -> torch.Tensor:
    return torch.rand(4, 2, F, T, generator=torch.Generator().manual_seed(0))


def test_generate_actions_structure_range_and_grid(
    cnn: TemporalCNNModel, states: torch.Tensor
) -> None:
    actions = cnn.generate_actions(states, num_actions_per_state=5)
    assert len(actions) == 4 and all(len(group) == 5 for group in actions)
    for group in actions:
        for a in group:
            assert a.shape == (D, T) and a.dtype == torch.float32
            assert a.min() >= 0 and a.max() <= 1
            levels = a * (K - 1)
            assert torch.allclose(levels, levels.round(), atol=1e-5)  # on the K-level grid
    # states as a list of numpy arrays work the same way
    as_list = cnn.generate_actions([s.numpy() for s in states], num_actions_per_state=2)
    assert len(as_list) == 4 and as_list[0][0].shape == (D, T)


def test_one_forward_pass_per_batch(cnn: TemporalCNNModel, states: torch.Tensor) -> None:
    calls: list[int] = []
    handle = cnn.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    try:
        cnn.generate_actions(states, num_actions_per_state=8)
        assert calls == [4]
        calls.clear()
        mixed = [states[0], states[1, :, :, :30], states[2]]  # two distinct lengths
        out = cnn.generate_actions(mixed, num_actions_per_state=3)
        assert sorted(calls) == [1, 2]
        assert [g[0].shape[-1] for g in out] == [T, 30, T]
    finally:
        handle.remove()


def test_temperature_controls_diversity(cnn: TemporalCNNModel, states: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(0)
    greedy = torch.stack(cnn.greedy_actions(states))

    def off_mode(temperature: float) -> float:
        acts = cnn.generate_actions(states, 16, temperature=temperature, generator=gen)
        stacked = torch.stack([torch.stack(g) for g in acts])  # [N, G, D, T]
        return (stacked != greedy[:, None]).float().mean().item()

    cold, warm, hot = off_mode(0.1), off_mode(1.0), off_mode(5.0)
    assert cold < warm < hot
    assert hot > 0.7  # close to uniform over 8 levels (7/8 off the mode)
    zero = cnn.generate_actions(states, 4, temperature=0)
    assert all(torch.equal(a, greedy[i]) for i, g in enumerate(zero) for a in g)
    with pytest.raises(ValueError, match="temperature"):
        cnn.generate_actions(states, temperature=-1.0)


def test_recomputed_log_probs_match_sampling(cnn: TemporalCNNModel, states: torch.Tensor) -> None:
    for temperature in (1.0, 0.7):
        actions, sampled = cnn.generate_actions(
            states, 6, temperature=temperature, return_log_probs=True
        )
        again = cnn.get_log_probabilities(states, actions, temperature=temperature)
        assert again.shape == (4, 6)
        assert torch.allclose(again, sampled, atol=1e-4)
    # and equal to gathering the model's own distribution by hand
    log_probs = cnn(states)
    index = torch.round(torch.stack([g[0] for g in actions]) * (K - 1)).long()
    manual = log_probs.gather(-1, index.unsqueeze(-1)).squeeze(-1).sum((1, 2))
    single = cnn.get_log_probabilities(states, [g[0] for g in actions])
    assert single.shape == (4,) and torch.allclose(single, manual, atol=1e-4)


def test_reductions_and_action_layouts(cnn: TemporalCNNModel, states: torch.Tensor) -> None:
    actions = cnn.generate_actions(states, 3)
    total = cnn.get_log_probabilities(states, actions)
    none = cnn.get_log_probabilities(states, actions, reduction="none")
    mean = cnn.get_log_probabilities(states, actions, reduction="mean")
    assert none.shape == (4, 3, D, T)
    assert torch.allclose(none.sum((-1, -2)), total, atol=1e-4)
    assert torch.allclose(mean * D * T, total, atol=1e-3)
    as_tensor = torch.stack([torch.stack(g) for g in actions])  # [N, G, D, T]
    assert torch.allclose(cnn.get_log_probabilities(states, as_tensor), total)
    as_levels = torch.round(as_tensor * (K - 1)).long()  # integer tensors are level indices
    assert torch.allclose(cnn.get_log_probabilities(states, as_levels), total)
    with pytest.raises(ValueError, match="reduction"):
        cnn.get_log_probabilities(states, actions, reduction="max")


def test_float_actions_snap_to_the_nearest_level(
    cnn: TemporalCNNModel, states: torch.Tensor
) -> None:
    actions = [g[0] for g in cnn.generate_actions(states)]
    exact = cnn.get_log_probabilities(states, actions)
    noise = (torch.rand(4, D, T) - 0.5) * (0.9 / (K - 1))  # < half a level either way
    jittered = [(a + n).clamp(0, 1) for a, n in zip(actions, noise)]
    assert torch.allclose(cnn.get_log_probabilities(states, jittered), exact)
    bad = [a.clone() for a in actions]
    bad[1][0, 0] = 1.5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cnn.get_log_probabilities(states, bad)
    bad[1][0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cnn.get_log_probabilities(states, bad)
    with pytest.raises(ValueError, match="num_devices, T"):
        cnn.get_log_probabilities(states, [a[:, :-1] for a in actions])
    with pytest.raises(ValueError, match="one action"):
        cnn.get_log_probabilities(states, actions[:3])
    with pytest.raises(ValueError, match="levels"):
        cnn.get_log_probabilities(states, [torch.full((D, T), K) for _ in range(4)])


def test_gradients_flow_through_log_probabilities(
    cnn: TemporalCNNModel, states: torch.Tensor
) -> None:
    cnn.zero_grad()
    actions = cnn.generate_actions(states, 4)
    logp = cnn.get_log_probabilities(states, actions)
    assert logp.requires_grad
    (-logp.mean()).backward()
    grads = {n: p.grad for n, p in cnn.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["backbone.frequency.convs.0.weight"].abs().sum() > 0
    assert grads["head.weight"].abs().sum() > 0
    # a small gradient step on these actions makes them more likely
    saved = {k: v.clone() for k, v in cnn.state_dict().items()}
    try:
        norm = torch.sqrt(sum((g**2).sum() for g in grads.values()))
        with torch.no_grad():
            for p in cnn.parameters():
                p -= (1e-3 / norm) * p.grad  # small: a first-order check
        assert cnn.get_log_probabilities(states, actions).mean() > logp.mean()
    finally:
        cnn.load_state_dict(saved)
        cnn.zero_grad()


def test_state_validation_names_the_expected_shape(cnn: TemporalCNNModel) -> None:
    with pytest.raises(ValueError, match=r"\[2, n_bins, T\]"):
        cnn.generate_actions(torch.rand(2, 3, F, T))
    with pytest.raises(ValueError, match=r"\[N, 2, n_bins, T\]"):
        cnn.generate_actions(torch.rand(F, T))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cnn.generate_actions(torch.rand(1, 2, F, T) * 3)
    with pytest.raises(ValueError, match="empty"):
        cnn.generate_actions([])
    with pytest.raises(TypeError, match="numpy array"):
        cnn.generate_actions(["not a cqt"])


def test_mixed_lengths_match_separate_calls(cnn: TemporalCNNModel) -> None:
    a, b = torch.rand(2, F, T), torch.rand(2, F, 28)
    acts_a, acts_b = cnn.greedy_actions([a]), cnn.greedy_actions([b])
    both = cnn.greedy_actions([a, b])
    assert torch.equal(both[0], acts_a[0]) and torch.equal(both[1], acts_b[0])
    logp = cnn.get_log_probabilities([a, b], both)
    assert torch.allclose(logp[1], cnn.get_log_probabilities([b], acts_b)[0], atol=1e-4)
    with pytest.raises(ValueError, match="same number of frames"):
        cnn.get_log_probabilities([a, b], both, reduction="none")


def test_chunked_batches_equal_one_batch(cnn: TemporalCNNModel, states: torch.Tensor) -> None:
    full = cnn.get_log_probabilities(states, cnn.greedy_actions(states))
    cnn.max_batch_size = 3
    try:
        assert torch.allclose(
            cnn.get_log_probabilities(states, cnn.greedy_actions(states)), full, atol=1e-5
        )
    finally:
        cnn.max_batch_size = None


def test_generator_makes_sampling_reproducible(cnn: TemporalCNNModel, states: torch.Tensor) -> None:
    first = cnn.generate_actions(states, 3, generator=torch.Generator().manual_seed(7))
    second = cnn.generate_actions(states, 3, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for g1, g2 in zip(first, second) for x, y in zip(g1, g2))


def test_entropy_is_per_element_and_differentiable(
    cnn: TemporalCNNModel, states: torch.Tensor
) -> None:
    ent = cnn.entropy(states)
    assert ent.shape == (4, D, T) and ent.requires_grad
    assert (ent > 0).all() and (ent <= np.log(K) + 1e-5).all()
    assert (cnn.entropy(states, temperature=10.0) > ent).all()
    uniform = RandomPolicy(num_devices=D, distribution_size=K).entropy(states)
    assert torch.allclose(uniform, torch.full_like(uniform, np.log(K)))


def test_every_policy_satisfies_the_protocol(cnn: TemporalCNNModel, states: torch.Tensor) -> None:
    vit = CQTViTModel.create_model((2, F, T), num_devices=D, distribution_size=K, device="cpu")
    policies = [cnn, vit, BandFollowPolicy(D, K), RandomPolicy(D, K, seed=0)]
    for policy in policies:
        assert isinstance(policy, PolicyModel) and isinstance(policy, CategoricalPolicy)
        actions, sampled = policy.generate_actions(states, 2, return_log_probs=True)
        logp = policy.get_log_probabilities(states, actions)
        assert logp.shape == (4, 2) and torch.isfinite(logp).all()
        assert torch.allclose(logp, sampled, atol=1e-3), type(policy).__name__
        assert isinstance(list(policy.parameters()), list)


@pytest.mark.parametrize("u", [0.0, 1.0 - 2.0**-24])
def test_extreme_uniforms_never_draw_a_level_the_cdf_cannot_resolve(monkeypatch, u):
    """A uniform of exactly 0 used to draw the first bin with any probability, here one of
    e^-99.6 (a denormal): the KL term of a long GRPO run then overflowed (iteration 999)."""
    import cqtml_policy.categorical as cat

    row = torch.tensor([-157.8, -144.6, -132.6, -121.2, -109.9, -99.6, -89.7, -80.4, -71.8,
                        -63.6, -55.9, -48.6, -42.1, -35.8, -30.2, -25.2, -20.6, -16.6, -12.5,
                        -9.5, -7.0, -4.6, -3.0, -2.2, -1.5, -1.1, -1.7, -2.6, -4.4, -6.2, -8.9,
                        -60.0])
    log_probs = torch.log_softmax(row, -1)[None]
    monkeypatch.setattr(cat.torch, "rand", lambda shape, **kw: torch.full(shape, u))
    index = cat.sample_indices(log_probs, 8)
    assert log_probs[0, index].min() > -17.0  # e^-17 ~ the float32 CDF's resolution
