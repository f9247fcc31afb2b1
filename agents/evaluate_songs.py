"""Whole songs through the show pipeline, judged by the independent metrics.

``agents/evaluate.py`` scores 5-second clips. A lighting person runs whole songs
(``cqtml-show``), and one measure only means something over a song: the self-similarity
correlation (Kohl et al., ACM MM'25), which compares the music's and the light's structure
across the whole track. This script runs every audio file of a folder through
``cqtml_env.show.make_show``, with its windows, cross-fades, song context and flash limiter.
It does so for the policy and for the band-follower. Then it computes every metric of
``agents/metrics.py`` on each whole song, from the song's audio, on the levels the lights get.

    python agents/evaluate_songs.py --policy runs/sft-default/checkpoints/final \\
        --data runs/.music/check --out runs/sft-default/eval-songs

It writes ``report.json`` (per song and mean, for the policy and both band-follower shows) and
``report.md``. A file that cannot be read is skipped and counted, with the reason; it never
stops the run.

The band-follower is shown twice when song gain is on: in the policy's shows (the same song
gain, so only the policies differ) and as ``cqtml-show --policy band-follow`` runs it (its own
song gain, the latest env's gold version), which is what a lighting user would get from it.
Each metric is also compared song by song (:func:`paired`): the mean of the per-song
difference, its 95 % bootstrap interval and the songs won, so a gap within the songs' spread
reads as one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.show.song_gain import SONG_FULLNESS


@dataclass
class Args:
    policy: str = "band-follow"
    """a checkpoint directory, or `band-follow`"""
    data: str = "songs"
    """a folder of audio files (searched recursively: wav, flac, ogg, opus, mp3, aiff, m4a)"""
    out: str = "eval-songs"
    """output directory for report.json and report.md"""
    num_devices: int = 4
    """number of devices (must match the checkpoint)"""
    max_songs: int = 0
    """evaluate the first N songs only, in path order (0: all)"""
    limiter: bool = True
    """judge the levels the lights get (after the flash limiter, as cqtml-show sends them);
    off (--no-limiter): the policy's cross-faded activations"""
    rig: str | None = None
    """a rig file (TOML, as `cqtml-show --rig`): its gamma, min/max and limiter settings apply"""
    context: float = 5.0
    """song-level context appended to each window, seconds (as `cqtml-show --context`)"""
    song_gain: bool = True
    """put each window back on the song's dynamic range (as `cqtml-show`; off:
    --no-song-gain)"""
    song_fullness: float = SONG_FULLNESS
    """with song gain: how far each stretch's brightness follows how full each band is (as
    `cqtml-show --song-fullness`; 0: the loudest notes only)"""


def song_metrics(song: Path, policies: dict[str, Any], *, limiter: bool = True,
                 rig: Any = None, context_s: float = 5.0,
                 song_gain: bool | str | dict[str, bool | str] = True,
                 song_fullness: float | None = None) -> dict[str, dict[str, float]]:
    """Every independent metric of each policy's whole-song show on ``song``'s audio (every
    policy through the same pipeline: ``song_gain`` as :func:`cqtml_env.show.make_show`, or a
    dict giving each show's by name)."""
    from agents.metrics import audio_features, show_metrics
    from cqtml_env.features.audio import load_audio
    from cqtml_env.features.cqt import CQTProcessor
    from cqtml_env.show import make_show

    processor = CQTProcessor()  # the shows' CQT grid: same sample rate, hop and bins
    audio, _ = load_audio(song, processor.sample_rate)
    if not np.abs(audio).max() > SILENT:  # a silent file would only add metric conventions
        raise ValueError(f"{song}: silent (no sample above {SILENT:g})")
    feats = audio_features(audio, processor=processor, num_devices=_devices(policies))
    out = {}
    for name, policy in policies.items():
        gain = song_gain[name] if isinstance(song_gain, dict) else song_gain
        show = make_show(song, policy, rig=rig, out=None, outputs=(), progress=False,
                         limiter=limiter, context_s=context_s, song_gain=gain,
                         song_fullness=song_fullness, log=lambda _msg: None)
        levels = show.levels if limiter else show.activations
        out[name] = show_metrics(_on_grid(levels, feats.num_frames), feats)
    return out


SILENT = 1e-6  # peak amplitude under which a file counts as silent (-120 dBFS)


def _devices(policies: dict[str, Any]) -> int:
    return int(getattr(next(iter(policies.values())), "num_devices", 4))


def _on_grid(levels: np.ndarray, frames: int) -> np.ndarray:
    """``[D, N]`` on the audio features' ``frames`` (the two framings differ by a frame or so
    at the end of a song: trimmed, or the last frame held)."""
    levels = np.asarray(levels, np.float32)[:, :frames]
    pad = frames - levels.shape[1]
    return np.pad(levels, ((0, 0), (0, pad)), mode="edge") if pad > 0 else levels


def evaluate_songs(args: Args) -> dict:
    """Score the policy and the band-follower on every song; write and return the report."""
    import torch
    from tqdm.auto import tqdm

    from agents.common import make_policy
    from agents.metrics import summarise
    from cqtml_env.contract import Contract
    from cqtml_env.datasets.folder import list_audio_files
    from cqtml_env.features.audio import AudioLoadError
    from cqtml_env.features.cqt import CQTProcessor
    from cqtml_env.show.rig import load_rig
    from cqtml_env.show.song_gain import SongGain, song_gain_version

    if args.song_gain:  # a bad --song-fullness is one clear error, not every song skipped
        try:
            SongGain(num_devices=args.num_devices, fullness=args.song_fullness)
        except ValueError as exc:
            raise ValueError(f"--song-fullness {args.song_fullness}: {exc}") from None
    root = Path(args.data).expanduser()
    if not root.is_dir():
        raise ValueError(f"--data {args.data}: not a folder of audio files")
    songs = list_audio_files(root)
    if args.max_songs > 0:
        songs = songs[: args.max_songs]
    if not songs:
        raise ValueError(f"--data {args.data}: no audio files (wav, flac, ogg, opus, mp3, ...)")
    proc = CQTProcessor()
    shape = (2, proc.n_bins, Contract.from_processor(proc, num_devices=args.num_devices).num_frames)
    policies = {
        "policy": make_policy(args.policy, shape, args.num_devices, device="cpu",
                              frame_rate=proc.frame_rate),
        "band-follow": make_policy("band-follow", shape, args.num_devices, device="cpu",
                                   frame_rate=proc.frame_rate),
    }
    for p in policies.values():
        if hasattr(p, "eval"):
            p.eval()
    rig = load_rig(args.rig, num_devices=args.num_devices) if args.rig else None
    # both shows with the song gain cqtml-show gives the policy: its teacher's gold version;
    # and the band-follower once more as cqtml-show runs it (its own: the latest env's)
    gain = args.song_gain and song_gain_version(
        None if args.policy == "band-follow" else args.policy)
    own = args.song_gain and song_gain_version(None)
    gains = {"policy": gain, "band-follow": gain}
    if own != gain:
        policies[OWN] = policies["band-follow"]
        gains[OWN] = own
    per_song, skipped = [], []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for song in tqdm(songs, desc="songs", unit="song"):
            try:
                m = song_metrics(song, policies, limiter=args.limiter, rig=rig,
                                 context_s=args.context, song_gain=gains,
                                 song_fullness=args.song_fullness)
                m.setdefault(OWN, m["band-follow"])  # the same show: not run twice
            except (AudioLoadError, ValueError) as exc:  # unreadable, empty, too short
                skipped.append({"song": str(song.relative_to(root)), "reason": str(exc)})
                continue
            per_song.append({"song": str(song.relative_to(root)), **m})
    if not per_song:
        raise ValueError(f"--data {args.data}: no song could be evaluated ({len(skipped)} skipped)")
    summary = {
        name: summarise({k: np.array([s[name][k] for s in per_song]) for k in per_song[0][name]})
        for name in ("policy", "band-follow", OWN)
    }
    pairs = {b: {k: paired([s["policy"][k] for s in per_song], [s[b][k] for s in per_song])
                 for k, _ in ROWS[:5]} for b in ("band-follow", OWN)}
    report = {
        "policy": args.policy, "data": str(root), "songs": len(per_song),
        "minutes": float(np.nansum([_minutes(s["song"], root) for s in per_song])),
        "levels": "after the flash limiter" if args.limiter else "activations (no limiter)",
        "rig": args.rig, "context_s": args.context, "song_gain": bool(gain),
        **({"song_gain_version": gain, "song_fullness": args.song_fullness} if gain else {}),
        "own_song_gain_version": own or None,
        "skipped": skipped, "summary": summary, "paired": pairs, "per_song": per_song,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "report.json", json.dumps(report, indent=1, default=_json_float))
    _write(out / "report.md", markdown(report))
    return report


OWN = "band-follow-own"  # the band-follower with its own song gain, as cqtml-show runs it


def paired(a: Any, b: Any, *, confidence: float = 0.95, resamples: int = 4000,
           seed: int = 0) -> dict[str, float]:
    """``a - b`` song by song: ``mean``, its bootstrap interval ``low``..``high`` (percentile,
    ``confidence``, seeded), ``wins`` (songs where ``a > b``), ``losses`` and ``n`` (songs
    where both are finite: ``ssm_corr`` is NaN on a song too short for it).

    Example:
        >>> r = paired([0.5, 0.6, 0.7], [0.4, 0.6, 0.5])
        >>> round(r["mean"], 3), r["wins"], r["losses"], r["n"]
        (0.1, 2, 0, 3)
    """
    from inspect import signature

    from scipy.stats import bootstrap

    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    d = d[np.isfinite(d)]
    out = {"mean": float("nan"), "low": float("nan"), "high": float("nan"),
           "wins": int((d > 0).sum()), "losses": int((d < 0).sum()), "n": int(d.size)}
    if d.size:
        out["mean"] = float(d.mean())
    if d.size >= 2 and np.ptp(d) > 0:
        seeded = ({"rng": np.random.default_rng(seed)} if "rng" in signature(bootstrap).parameters
                  else {"random_state": np.random.default_rng(seed)})  # scipy < 1.15
        ci = bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=resamples,
                       method="percentile", **seeded).confidence_interval
        out["low"], out["high"] = float(ci.low), float(ci.high)
    elif d.size:  # every song the same difference: no spread to resample
        out["low"] = out["high"] = out["mean"]
    return out


def _minutes(rel: str, root: Path) -> float:
    import soundfile as sf

    try:
        return float(sf.info(str(root / rel)).duration) / 60
    except RuntimeError:  # a format soundfile cannot describe (m4a through PyAV)
        return float("nan")


def _json_float(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else float(x)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


ROWS = (
    ("ssm_corr", "self-similarity correlation (whole song)"),
    ("novelty_corr", "novelty correlation"),
    ("beat_f", "beat-peak F-measure (±50 ms)"),
    ("loudness_corr", "loudness correlation"),
    ("band_corr", "band-energy correlation"),
    ("flashes", "flashes in the worst 1 s (mean over songs)"),
    ("flash_safe", "flash-safe songs (<= 3 per s everywhere)"),
    ("mean_brightness", "mean brightness"),
    ("std_time", "std over time"),
)


def markdown(r: dict) -> str:
    p, b = r["summary"]["policy"], r["summary"]["band-follow"]
    o = r["summary"].get(OWN, b)
    gain = (f"on, {r.get('song_gain_version', 'gold-v5')}'s range, fullness "
            f"{r.get('song_fullness', 0):g}" if r.get("song_gain", False) else "off")
    own = r.get("own_song_gain_version")
    own_label = (f"band-follower, {own}'s song gain (as cqtml-show runs it)" if own else
                 "band-follower (the same show: song gain off)")
    lines = [
        f"# Whole songs: `{r['policy']}` vs the band-follower",
        "",
        f"{r['songs']} songs ({r['minutes']:.1f} min) of `{r['data']}`, each run through the "
        f"show pipeline ({r.get('context_s', 5.0):g} s of song context per window, song gain "
        f"{gain}); levels "
        f"{r['levels']}. Skipped: {len(r['skipped'])}.",
        "",
        f"| measure | this policy | band-follower, same shows | {own_label} |",
        "|---|---|---|---|",
        *(f"| {label} | {p.get(k, float('nan')):.3f} | {b.get(k, float('nan')):.3f} | "
          f"{o.get(k, float('nan')):.3f} |" for k, label in ROWS),
        "",
    ]
    if "paired" in r:
        def cell(x: dict) -> str:
            return (f"{x['mean']:+.4f} [{x['low']:+.4f}, {x['high']:+.4f}], "
                    f"{x['wins']} won / {x['losses']} lost of {x['n']}")

        lines += ["Song by song, this policy minus the band-follower (mean, 95 % bootstrap "
                  "interval, songs won and lost):", "",
                  f"| measure | same shows | {'as cqtml-show runs it' if own else 'the same show'} |",
                  "|---|---|---|",
                  *(f"| {label} | {cell(r['paired']['band-follow'][k])} | "
                    f"{cell(r['paired'][OWN][k])} |" for k, label in ROWS[:5]), ""]
    lines += [f"- skipped `{s['song']}`: {s['reason']}" for s in r["skipped"]]
    return "\n".join(lines) + "\n"


def cli(argv: list[str] | None = None) -> int:
    import sys

    import tyro

    try:
        report = evaluate_songs(tyro.cli(Args, args=argv))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(report))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(cli())
