"""Figures for the docs: ``python docs/make_figures.py [name ...]`` (Agg backend, no display).

Each figure is one function ``fig_<name>(out_dir)`` registered in ``FIGURES``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

IMG_DIR = Path(__file__).resolve().parent / "img"


def fig_synthetic_cqts(out_dir: Path = IMG_DIR, num: int = 6, seed: int = 0) -> Path:
    """CQTs (left channel) of the first SyntheticMusic clips, beats ticked, stems energy below."""
    from cqtml_env import SyntheticMusic

    ds = SyntheticMusic(num_clips=num, seed=seed)
    p = ds.processor
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.4), constrained_layout=True)
    extent = (0, p.num_frames / p.frame_rate, 0, p.n_bins)
    for i, ax in enumerate(axes.flat[:num]):
        cqt, info = ds[i], ds.clip_info(i)
        ax.imshow(cqt.mean(axis=0), origin="lower", aspect="auto", cmap="magma",
                  vmin=0, vmax=1, extent=extent, interpolation="nearest")
        ax.vlines(info["beat_times"], -3, 0, color="cyan", lw=1.2, clip_on=False)
        ax.vlines(info["downbeat_times"], -5, 0, color="lime", lw=1.8, clip_on=False)
        ax.set_ylim(-5, p.n_bins)
        ax.set_title(f"#{i} {info['preset']}  {info['tempo']:.0f} BPM  {info['dynamics']}",
                     fontsize=10)
        ax.set_yticks([0, 24, 48, 72], ["C1", "C3", "C5", "C7"])
        ax.set_xlabel("s")
    fig.suptitle(f"SyntheticMusic(seed={seed}) CQTs (mean of L/R); ticks: beats, downbeats")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "synthetic_cqts.png"
    fig.savefig(out, dpi=72)
    plt.close(fig)
    return out


def fig_gold_components(out_dir: Path = IMG_DIR) -> Path:
    """The gold scorer's criteria on one clip (see docs/figures_gold.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from figures_gold import fig_gold_components as make

    return make(out_dir)


FIGURES = {"synthetic_cqts": fig_synthetic_cqts, "gold_components": fig_gold_components}


def main(argv: list[str] | None = None) -> None:
    names = (argv if argv is not None else sys.argv[1:]) or list(FIGURES)
    for name in names:
        print(FIGURES[name]())


if __name__ == "__main__":
    main()
