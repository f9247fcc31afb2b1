"""The model card written beside trained default reward-model weights (``MODEL_CARD.md``)."""

from __future__ import annotations

from typing import Any


def model_card(model: Any, report: dict, fresh: dict, transfer: dict) -> str:
    """The MODEL_CARD.md text of a model trained by :func:`~cqtml_env.reward.default.train_default`."""
    from cqtml_env.reward.default import DEFAULT_DATA_SEED, FRESH_DATA_SEED

    v = report["best_val"]
    m = model.config.metrics
    version = model.config.gold_version
    if version == "gold-v1":
        clip_side = (
            "weights, initialised to `device_bands`; mean of the 3 loudest bins), positive flux, "
            "a target\nestimate `clip((L - gate) / (q95(L) - gate), 0, 1)` with a learned gate, "
            "onset maps (flux\npeaks above the local mean), silence mask."
        )
        beat_limit = "- The gold `beat` component (librosa beat tracking) is not modelled directly.\n"
    else:
        clip_side = (
            f"weights, initialised to `device_bands`) and positive flux; the target, band onsets, "
            f"silent frames\nand beats are {version}'s own (`GoldScorer(version=\"{version}\")`, "
            "fixed per clip). The rig's\nbeat response (rises of the mean over devices near the "
            "clip's beats) is a feature too."
        )
        beat_limit = ""
    return f"""# CQTML reward model for {version}

A small Bradley–Terry reward model (`cqtml_env.RewardModel.load_default("{version}")`) that scores a
light show (activations `[4, 216]` in [0, 1]) for a clip's CQT (`[2, 84, 216]`).
{model.num_parameters()} parameters; safetensors + JSON config.

## Architecture
Per clip (once): the louder CQT channel pooled per device over its band (learned softmax band
{clip_side} Per action, device and frame: level, error to the
target, difference, 2-frame rise, onset response, rise events, a flash-rate estimate, light in
silence; a linear layer + ReLU ({model.config.hidden} units) to a per-frame contribution. Per device:
correlation, spreads, onset precision/recall, darkness, flicker statistics and the pooled
hidden units through a small MLP to a global term. Score = mean over devices and frames of
(per-frame + global). Scoring 256 actions of one clip takes about
{m["ms_per_256_one_clip_1_thread"]:.0f} ms on one CPU thread of the training machine.

## How it was made
`{m["command"]}` (seeded, CPU, single thread): SyntheticMusic clips (seed {DEFAULT_DATA_SEED} +
seed), 64 candidate actions per clip from `cqtml_env.preferences.candidates` (noise, smoothed noise,
band followers and their perturbations, i.i.d. samples around good actions on the 32-level
grid, pulses, the gold target), 128 pairs per clip (half random, half close in gold rank),
labelled by the **oracle** labeller over the gold scorer {version} (`docs/GOLD.md`); the
figures below are agreement with {version}.
{report["num_pairs"]} pairs over {report["num_clips"]} clips; {report["val_clips"]} clips held
out for early stopping (by clip). {report["epochs_run"]} epochs,
{report["train_minutes"]:.1f} min of training ({m["total_minutes"]:.1f} min in all).

## Figures (pairs and clips never trained on)
| set | accuracy vs labels | accuracy vs gold | log-loss | Spearman (per clip) |
|---|---|---|---|---|
| held-out synthetic clips, stored pairs | {v["acc_labels"]:.3f} | {v["acc_gold"]:.3f} | {v["logloss"]:.3f} | {v["spearman_per_clip"]:.3f} |
| fresh synthetic clips (seed {FRESH_DATA_SEED}), new candidates, same pair mix | – | {fresh["acc_gold_sampled_pairs"]:.3f} | – | {fresh["spearman_per_clip"]:.3f} |
| same, all candidate pairs | – | {fresh["acc_gold_all_pairs"]:.3f} | – | pooled {fresh["spearman_pooled"]:.3f} |
| record-like audio (Karplus–Strong, noise drums, room, saturation) | – | {transfer["acc_gold_sampled_pairs"]:.3f} (all pairs {transfer["acc_gold_all_pairs"]:.3f}) | – | {transfer["spearman_per_clip"]:.3f} |

"Accuracy vs gold" is agreement with the noiseless gold ordering (ties excluded); the pair mix
has half of its pairs close in gold rank, which is the hard part.

## Output scale
`forward()` returns the raw Bradley–Terry logit scale; `score()` returns the calibrated score
`raw * {model.config.calib_scale:.5f} + {model.config.calib_bias:.5f}`, a least-squares fit to
the gold score on the training candidates (mean absolute error on fresh synthetic
candidates: {fresh["calibrated_mae"]:.3f}).

## Known limits
- Trained only on synthetic music and the gold scorer's notion of a good show; on real
  recordings the ordering holds less well where the gold scorer's onsets are ambiguous.
{beat_limit}- Far outside the candidate mix (e.g. adversarial actions found by long RL optimisation) the
  model can be over-optimised: track the gold score too (Gao et al. 2022).
- 4 devices, 84 bins; other layouts need retraining.
"""


__all__ = ["model_card"]
