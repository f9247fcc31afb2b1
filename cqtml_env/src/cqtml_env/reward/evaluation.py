"""How well a reward model agrees with the gold scorer on clips and candidates it never saw."""

from __future__ import annotations

import numpy as np

from cqtml_env.reward.model import RewardModel, spearman
from cqtml_env.reward.scoring import ShowScorer


def evaluate_fresh(
    model: RewardModel,
    cqts: np.ndarray,
    candidates: int = 64,
    seed: int = 0,
    scorer=None,
    near_fraction: float = 0.5,
    pairs_per_clip: int = 128,
) -> dict:
    """Spearman and pairwise agreement with gold on new candidates of new clips (scored
    through the env's scoring path, :class:`~cqtml_env.reward.scoring.ShowScorer`); ``scorer``
    None: the gold version the model's features follow."""
    from cqtml_env.gold.scorer import GoldScorer
    from cqtml_env.preferences.candidates import CandidateFactory
    from cqtml_env.preferences.sampling import sample_pairs

    cfg = model.config
    scorer = scorer or GoldScorer(num_devices=cfg.num_devices, frame_rate=cfg.frame_rate,
                                  version=cfg.gold_version)
    scoring = ShowScorer(proxy=model, gold=scorer, cache_size=1)
    rng = np.random.default_rng(seed)
    rhos, pooled_r, pooled_g = [], [], []
    agree, total, agree_all, total_all = 0, 0, 0, 0
    for k, cqt in enumerate(cqts):
        acts, _ = CandidateFactory(cqt, scorer, cfg.num_devices).sample(candidates, rng)
        scores = scoring.score(np.full(len(acts), k), acts, lambda _, cqt=cqt: cqt)
        gold, pred = scores.gold, scores.proxy
        rhos.append(spearman(pred, gold))
        pooled_r.append(pred)
        pooled_g.append(gold)
        pairs = sample_pairs(gold, pairs_per_clip, rng, near_fraction)
        gd = gold[pairs[:, 0]] - gold[pairs[:, 1]]
        pd = pred[pairs[:, 0]] - pred[pairs[:, 1]]
        nz = gd != 0
        agree += int(((pd > 0) == (gd > 0))[nz].sum())
        total += int(nz.sum())
        iu = np.triu_indices(len(gold), 1)
        gd_all = gold[iu[0]] - gold[iu[1]]
        pd_all = pred[iu[0]] - pred[iu[1]]
        nz = gd_all != 0
        agree_all += int(((pd_all > 0) == (gd_all > 0))[nz].sum())
        total_all += int(nz.sum())
    r, g = np.concatenate(pooled_r), np.concatenate(pooled_g)
    return {
        "clips": int(len(cqts)),
        "spearman_per_clip": float(np.mean(rhos)),
        "spearman_pooled": spearman(r, g),
        "acc_gold_sampled_pairs": agree / max(total, 1),
        "acc_gold_all_pairs": agree_all / max(total_all, 1),
        "calibrated_mae": float(np.abs(r - g).mean()),
    }


__all__ = ["evaluate_fresh"]
