"""Gold scorer figure: ``python docs/figures_gold.py`` -> ``docs/img/gold_components.png``.

One synthetic clip: its CQT with the device bands, the bass and treble band targets with
their onsets and the clip's beats, a few light shows on those devices, and every action's
component scores (mean over devices) with the total.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

IMG_DIR = Path(__file__).resolve().parent / "img"


def fig_gold_components(out_dir: Path = IMG_DIR, seed: int = 3, index: int = 1) -> Path:
    from cqtml_env import SyntheticMusic
    from cqtml_env.gold.scorer import COMPONENTS, GoldScorer, device_bands
    from cqtml_env.preferences.candidates import _smooth_noise, smoothed_band_level

    ds = SyntheticMusic(num_clips=index + 1, seed=seed)
    cqt, info = ds[index], ds.clip_info(index)
    fps = ds.processor.frame_rate
    scorer = GoldScorer()
    f = scorer.features(cqt)
    t_len = cqt.shape[2]
    t = np.arange(t_len) / fps
    rng = np.random.default_rng(0)
    follower = smoothed_band_level(cqt)
    strobe = np.tile(((t * 10) % 1.0 < 0.5).astype(np.float32), (4, 1))
    actions = {
        "ideal (band target)": f.target,
        "band follower (WLED-style)": follower,
        "follower 6 frames late": np.roll(follower, 6, axis=1),
        "smoothed noise": _smooth_noise(rng, (4, t_len), 12),
        "10 Hz strobe": strobe,
        "constant 0.5": np.full((4, t_len), 0.5, np.float32),
    }
    acts = np.stack([np.clip(a, 0, 1) for a in actions.values()]).astype(np.float32)
    comps = scorer.score_components(cqt, acts)
    total = scorer.score(cqt, acts)
    colors = ["k", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:gray"]

    fig = plt.figure(figsize=(13, 11), constrained_layout=True)
    gs = fig.add_gridspec(4, 2, height_ratios=[1.2, 1, 1, 1.3])
    ax = fig.add_subplot(gs[0, :])
    ax.imshow(
        cqt.max(axis=0),
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=0,
        vmax=1,
        extent=(0, t_len / fps, 0, cqt.shape[1]),
        interpolation="nearest",
    )
    for lo, _ in device_bands(cqt.shape[1], 4)[1:]:
        ax.axhline(lo, color="w", lw=0.8, ls="--")
    ax.vlines(f.beat_frames / fps, -4, 0, color="cyan", lw=1.5, clip_on=False)
    ax.set_ylim(-4, cqt.shape[1])
    ax.set_title(
        f"SyntheticMusic(seed={seed})[{index}] {info['preset']}: CQT (louder channel), "
        "device bands (dashed), beats (cyan ticks)",
        fontsize=10,
    )
    ax.set_ylabel("CQT bin")
    for col, d in enumerate((0, 3)):
        ax = fig.add_subplot(gs[1, col])
        ax.plot(t, f.level[d], color="0.6", lw=1, label="band level L (top-3 bins)")
        ax.plot(t, f.target[d], color="k", lw=1.5, label="target y (gate + auto-gain)")
        ax.vlines(f.onset_frames[d] / fps, 0, 1.05, color="tab:purple", lw=1, label="onsets")
        ax.fill_between(t, 0, 1.05, where=f.silent[d], color="tab:blue", alpha=0.1, label="silent")
        ax.set_title(f"device {d} ({'bass' if d == 0 else 'treble'}) band envelope", fontsize=10)
        ax.set_ylim(0, 1.08)
        ax.legend(fontsize=7, loc="upper right")
        ax = fig.add_subplot(gs[2, col])
        for (name, a), c in zip(list(actions.items())[:4], colors):
            ax.plot(t, a[d], color=c, lw=1.2 if c == "k" else 1, label=name)
        ax.vlines(f.onset_frames[d] / fps, 0, 1.05, color="tab:purple", lw=0.6, alpha=0.5)
        ax.set_title(f"device {d}: some light shows", fontsize=10)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("s")
        ax.legend(fontsize=7, loc="upper right")
    ax = fig.add_subplot(gs[3, :])
    names = [*COMPONENTS, "total"]
    width = 0.8 / len(actions)
    x = np.arange(len(names))
    for i, (name, c) in enumerate(zip(actions, colors)):
        vals = [comps[k][i].mean() for k in COMPONENTS] + [total[i]]
        ax.bar(
            x + (i - len(actions) / 2 + 0.5) * width,
            vals,
            width,
            color=c,
            label=f"{name}: {total[i]:.3f}",
        )
    w = scorer.weights
    ax.set_xticks(x, [f"{k}\n(w={w[k]:.2f})" for k in COMPONENTS] + ["total"])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (mean over devices)")
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.set_title("gold components per action", fontsize=10)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "gold_components.png"
    fig.savefig(out, dpi=70)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(fig_gold_components())
