"""``cqtml-show``: a song and a policy in, a safe light show for a rig out.

    cqtml-show SONG --policy {CHECKPOINT|band-follow} [--rig RIG.toml] [--out DIR] [--play]

Writes show.csv, show.json, show.mid, overview.png and preview.mp4 to ``--out`` (atomically:
a temp folder moved in when everything is done). ``--play`` then plays the song and sends
the frames live to the rig's outputs (sACN, Art-Net, OSC, MIDI). The flash limiter is always
on unless ``--unsafe-no-limiter`` is given.

The policy enters as an argument: ``cqtml_env`` never imports ``cqtml_policy``; only this
command, when asked for a checkpoint or ``band-follow``, imports it (lazily, inside
:func:`load_policy_arg`), with a clear error if it is not installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ALL_OUTPUTS = ("csv", "json", "midi", "overview", "video")


def load_policy_arg(spec: str, *, num_devices: int, frame_rate: float, device: str = "cpu"
                    ) -> Any:
    """``band-follow`` or a saved policy folder -> a PolicyModel (needs ``cqtml-policy``)."""
    try:
        import cqtml_policy
    except ImportError as exc:
        raise SystemExit(
            f"--policy {spec}: needs the cqtml-policy package (pip install cqtml-policy); "
            "or call cqtml_env.show.make_show with any object that has generate_actions"
        ) from exc
    if spec in ("band-follow", "bandfollow", "band_follow"):
        return cqtml_policy.BandFollowPolicy(num_devices=num_devices, frame_rate=frame_rate)
    path = Path(spec)
    if not path.exists():
        raise SystemExit(f"--policy {spec}: no such checkpoint folder (or use 'band-follow')")
    policy = cqtml_policy.load_policy(path, device=device) if device else \
        cqtml_policy.load_policy(path)
    policy.eval()
    return policy


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cqtml-show", description=__doc__.split("\n")[0])
    p.add_argument("song", help="audio file (wav, flac, ogg, opus, mp3, aiff, m4a), any length")
    p.add_argument("--policy", required=True,
                   help="a saved policy folder (checkpoint) or 'band-follow'")
    p.add_argument("--rig", default=None, help="rig TOML file (default: 4 dimmers, universe 1)")
    p.add_argument("--out", default="show", help="output folder (default: ./show)")
    p.add_argument("--play", action="store_true", help="play the song and send frames live")
    p.add_argument("--outputs", default=",".join(ALL_OUTPUTS),
                   help=f"comma-separated files to write (default: all of {','.join(ALL_OUTPUTS)})")
    p.add_argument("--no-video", action="store_true", help="skip preview.mp4 (the slowest file)")
    p.add_argument("--window", type=float, default=5.0, help="policy window, seconds")
    p.add_argument("--overlap", type=float, default=1.5, help="window overlap, seconds")
    p.add_argument("--context", type=float, default=5.0,
                   help="song-level context appended to each window, seconds (0: off)")
    p.add_argument("--no-song-gain", action="store_true",
                   help="keep each window on its own dynamic range (default: the song's, so "
                        "quiet passages stay darker than loud ones)")
    p.add_argument("--song-fullness", type=float, default=None, metavar="F",
                   help="with song gain: how far each stretch's brightness follows how full "
                        "each band is (its mean over all bins) rather than its loudest notes, "
                        "0..1 (default 0.5; 0: the loudest notes only)")
    p.add_argument("--latency-ms", type=float, default=None,
                   help="override the rig's latency offset for --play")
    p.add_argument("--clock", choices=("auto", "audio", "wall"), default="auto",
                   help="--play clock: the sound card's (audio), or a wall clock")
    p.add_argument("--realtime", action="store_true",
                   help="--play under real-time scheduling (SCHED_FIFO; needs root or "
                        "CAP_SYS_NICE): frames stay on time on a busy machine")
    p.add_argument("--device", default="cpu", help="torch device for a checkpoint policy")
    p.add_argument("--unsafe-no-limiter", action="store_true",
                   help="DANGER: switch the WCAG flash limiter off (prints a warning)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from cqtml_env.contract import Contract
    from cqtml_env.features.audio import AudioLoadError
    from cqtml_env.features.cqt import CQTProcessor
    from cqtml_env.show.api import make_show
    from cqtml_env.show.rig import RigError, load_rig

    outputs = tuple(o.strip() for o in args.outputs.split(",") if o.strip())
    bad = [o for o in outputs if o not in ALL_OUTPUTS]
    if bad:
        print(f"cqtml-show: --outputs: unknown {bad}; expected some of {ALL_OUTPUTS}",
              file=sys.stderr)
        return 2
    if args.no_video:
        outputs = tuple(o for o in outputs if o != "video")
    try:
        rig = load_rig(args.rig)
    except RigError as exc:
        print(f"cqtml-show: bad rig file: {exc}", file=sys.stderr)
        return 2
    contract = Contract.from_processor(CQTProcessor(max_duration=args.window),
                                       num_devices=rig.num_devices)
    policy = load_policy_arg(args.policy, num_devices=rig.num_devices,
                             frame_rate=contract.frame_rate, device=args.device)
    from cqtml_env.show.song_gain import song_gain_version

    # song gain on the range of the gold version the checkpoint's teacher had (band-follow:
    # the default's)
    gain = False if args.no_song_gain else song_gain_version(
        None if args.policy == "band-follow" else args.policy)
    try:
        show = make_show(args.song, policy, rig=rig, out=args.out, window_s=args.window,
                         overlap_s=args.overlap, context_s=args.context,
                         song_gain=gain, song_fullness=args.song_fullness,
                         limiter=not args.unsafe_no_limiter,
                         outputs=outputs, progress=not args.quiet)
    except (AudioLoadError, ValueError) as exc:
        print(f"cqtml-show: {exc}", file=sys.stderr)
        return 2
    lim = show.limiter
    print(f"show: {show.duration:.1f} s, {show.levels.shape[1]} frames at "
          f"{show.frame_rate:.2f} fps, {rig.num_devices} devices ({', '.join(rig.names)})")
    if lim.get("enabled"):
        print(f"flash limiter: on (<= {lim['max_flashes']} flashes / {lim['window_s']:g} s per "
              f"device and rig mean); changed {100 * lim['fraction_changed']:.1f}% of frames")
    print(f"song gain: on, {show.song_gain['gold_version']}'s range, fullness "
          f"{show.song_gain['fullness']:g} (quiet passages stay darker than loud ones)"
          if show.song_gain.get("enabled")
          else "song gain: off (each window on its own range)")
    print(f"tempo: {show.bpm:.1f} BPM" if show.bpm else "tempo: not detected (MIDI at 120)")
    for _name, path in show.files.items():
        print(f"  {path}")
    if args.play:
        from cqtml_env.show.player import play_show

        play_show(show, clock=args.clock, latency_ms=args.latency_ms, realtime=args.realtime)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
