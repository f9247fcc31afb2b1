"""A gold version's *target* run as the policy through whole-song shows (docs/GOLD.md,
"gold-v7"): what a perfect student of that teacher would score on whole songs, beside the
band-follower through the same pipeline.

    python bench/teacher_show.py --data runs/.music/check runs/.music/probe \\
        --targets gold-v5,gold-v7 "gold-v5:floor_percentile=1.0"

Every song of every ``--data`` folder goes through ``cqtml_env.show.make_show`` (windows, song
context, cross-fades, flash limiter) with a "policy" that returns the target spec's gold target
of each window it is given (quantised to the level grid, as a policy's actions are), and with
song gain on that spec's own range (a student of it gets the same from ``song_gain_version``).
The band-follower runs once per distinct song-gain range. Each show is scored by
``agents/metrics.py`` on the song's audio; the table gives each folder's means. A spec is
``gold-vN`` or ``gold-vN:key=json;key=json`` (config overrides, as in bench/gold_ranking.py).

The student follows its teacher closely in the show (README, "Whole songs"), so this is the
cheap screen for a new gold version: a minute or two per spec and folder on this CPU, against
ten minutes of training and evaluation per seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

COLUMNS = ("ssm_corr", "novelty_corr", "beat_f", "loudness_corr", "band_corr", "flash_safe")


class TargetPolicy:
    """The PolicyModel protocol over a gold scorer: every window's own gold target."""

    def __init__(self, scorer, num_devices: int = 4) -> None:
        self.scorer, self.num_devices = scorer, num_devices

    def generate_actions(self, states, num_actions_per_state: int = 1, temperature: float = 0.0):
        from cqtml_env.contract import quantise

        return [[quantise(self.scorer.features(np.clip(np.asarray(s, np.float32), 0, 1)).target)]
                for s in states]


def spec_song_gain(spec: str, num_devices: int = 4, fullness: float | None = None):
    """A ``SongGain`` on a spec's scorer (a spec need not be a registered version)."""
    from gold_ranking import make_scorer

    from cqtml_env.show.song_gain import SongGain

    gain = SongGain(num_devices=num_devices, **({} if fullness is None else {"fullness": fullness}))
    gain.scorer = make_scorer(spec)
    gain.gold_version = spec
    if gain.scorer.config.loudness_law:
        raise ValueError(f"{spec}: song gain needs a target linear in the band level")
    return gain


def show_levels(song: Path, policy, gain) -> np.ndarray:
    from cqtml_env.show import make_show

    return make_show(song, policy, out=None, outputs=(), progress=False, song_gain=gain,
                     log=lambda _m: None).levels


def run(folders: list[str], specs: list[str], fullness: float | None = None) -> dict:
    from gold_ranking import make_scorer

    import cqtml_policy as P
    from agents.evaluate_songs import _on_grid
    from agents.metrics import audio_features, show_metrics, summarise
    from cqtml_env.datasets.folder import list_audio_files
    from cqtml_env.features.audio import load_audio
    from cqtml_env.features.cqt import CQTProcessor

    proc = CQTProcessor()
    follower = P.BandFollowPolicy(num_devices=4, frame_rate=proc.frame_rate)
    out: dict = {}
    for folder in folders:
        songs = list_audio_files(Path(folder))
        if not songs:
            raise ValueError(f"{folder}: no audio files")
        feats = []
        for s in songs:
            audio, _ = load_audio(s, proc.sample_rate)
            feats.append(audio_features(audio, processor=proc, num_devices=4))
        rows: dict[str, dict] = {}
        for spec in specs:
            gain = spec_song_gain(spec, fullness=fullness)
            policy = TargetPolicy(make_scorer(spec))
            for name, pol in ((spec, policy), (f"band-follower, song gain on {spec}", follower)):
                per = [show_metrics(_on_grid(show_levels(s, pol, gain), f.num_frames), f)
                       for s, f in zip(songs, feats)]
                rows[name] = summarise({k: np.array([m[k] for m in per]) for k in per[0]})
            print(f"{folder}: {spec} done", file=sys.stderr, flush=True)
        out[folder] = {"songs": len(songs), "rows": rows}
    return out


def markdown(res: dict) -> str:
    lines = []
    for folder, r in res.items():
        lines += [f"{r['songs']} songs of `{folder}`; the flash limiter on", "",
                  "| show | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        for name, m in r["rows"].items():
            lines.append(f"| {name} | " + " | ".join(f"{m[c]:.3f}" for c in COLUMNS) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="folders of songs")
    ap.add_argument("--targets", default="gold-v5,gold-v7",
                    help="comma-separated specs; more specs (with ';' overrides) as arguments")
    ap.add_argument("extra", nargs="*", help="more target specs")
    ap.add_argument("--song-fullness", type=float, default=None,
                    help="song gain's fullness (default: cqtml-show's; 0: the loudest notes only)")
    args = ap.parse_args(argv)
    specs = [s for s in args.targets.split(",") if s] + list(args.extra)
    print(markdown(run(args.data, specs, fullness=args.song_fullness)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
