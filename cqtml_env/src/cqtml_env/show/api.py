"""``make_show``: a song and a policy in, a safe show for a rig out (the library call behind
``cqtml-show``)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.show.limiter import FlashLimiter
from cqtml_env.show.rig import Rig, load_rig

UNSAFE_WARNING = (
    "WARNING: the photosensitivity flash limiter is OFF (--unsafe-no-limiter). This show may "
    "flash more than 3 times a second and can trigger seizures in people with photosensitive "
    "epilepsy. Do not run it in front of an audience."
)


@dataclass
class Show:
    """A finished show: per-frame values and where its files went."""

    frame_rate: float
    rig: Rig
    activations: np.ndarray  # [D, N] the policy's cross-faded activations (after song gain)
    levels: np.ndarray  # [D, N] limited intensities in [0, 1] (what the lights get)
    duration: float
    files: dict[str, Path] = field(default_factory=dict)
    bpm: float | None = None
    limiter: dict[str, Any] = field(default_factory=dict)
    song_gain: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    song: str = ""

    def times(self) -> np.ndarray:
        return np.arange(self.levels.shape[1]) / self.frame_rate


def _commit_dir(tmp: Path, out: Path) -> None:
    """Move a finished temp folder's files into ``out`` (each move atomic)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    if not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    for p in tmp.iterdir():
        os.replace(p, out / p.name)
    tmp.rmdir()


def make_show(
    song: str | os.PathLike,
    policy: Any,
    *,
    rig: Rig | str | os.PathLike | None = None,
    out: str | os.PathLike | None = "show",
    window_s: float = 5.0,
    overlap_s: float = 1.5,
    margin_s: float = 0.25,
    context_s: float = 5.0,
    song_gain: bool | str | Any = True,
    song_fullness: float | None = None,
    limiter: bool = True,
    outputs: tuple[str, ...] = ("csv", "json", "midi", "overview", "video"),
    video_size: tuple[int, int] = (480, 272),
    video_fps: int = 20,
    progress: bool = True,
    log=None,
) -> Show:
    """Run ``policy`` over the whole of ``song`` and write the show files to ``out``.

    ``policy``: any :class:`cqtml_policy.PolicyModel` (``generate_actions``) whose device
    count equals the rig's. Windows of ``window_s`` overlap by ``overlap_s`` and are
    cross-faded; ``context_s`` of song-level context is appended to each window (see
    :mod:`cqtml_env.show.inference`). ``song_gain`` (default on; a gold version such as
    ``"gold-v7"`` takes that version's range, :func:`~cqtml_env.show.song_gain.song_gain_version`
    gives a checkpoint's; or a ready :class:`~cqtml_env.show.song_gain.SongGain`) puts each window back on the
    song's dynamic range, so quiet passages stay darker than loud ones
    (:mod:`cqtml_env.show.song_gain`); ``song_fullness`` (None: the default
    :data:`~cqtml_env.show.song_gain.SONG_FULLNESS`; 0: the loudest notes only) how far each
    stretch's brightness follows how full its band is. ``limiter=False`` disables the flash limiter and
    prints a warning. Files are written to a temporary folder next to ``out`` and moved in
    only when all are done. ``out=None`` writes nothing (values only).

    Example:
        >>> from cqtml_policy import BandFollowPolicy   # doctest: +SKIP
        >>> show = make_show("song.flac", BandFollowPolicy(num_devices=4), out="show")  # doctest: +SKIP
    """
    from cqtml_env.contract import Contract
    from cqtml_env.features.cqt import CQTProcessor
    from cqtml_env.show.export import (
        detect_tempo,
        overview_image,
        write_csv,
        write_json,
        write_midi,
        write_png,
    )
    from cqtml_env.show.inference import (
        WindowRunner,
        context_from_audio,
        cqt_to_disk,
        windowed_actions,
    )
    from cqtml_env.show.song_gain import SongGain
    from cqtml_env.show.stream import AudioReader

    log = log or (lambda msg: print(msg, file=sys.stderr))
    unknown = set(outputs) - {"csv", "json", "midi", "overview", "video"}
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; expected csv, json, midi, "
                         "overview, video")
    if not isinstance(rig, Rig):
        rig = load_rig(rig, num_devices=int(getattr(policy, "num_devices", 4)))
    if not hasattr(policy, "generate_actions"):
        raise TypeError(f"policy must have generate_actions (the PolicyModel protocol), got "
                        f"{type(policy).__name__}")
    pd = getattr(policy, "num_devices", None)
    if pd is not None and int(pd) != rig.num_devices:
        raise ValueError(f"the policy drives {pd} devices but the rig {rig.source} has "
                         f"{rig.num_devices}: use a rig with {pd} devices")
    processor = CQTProcessor(max_duration=window_s)
    contract = Contract.from_processor(processor, num_devices=rig.num_devices)
    fr = contract.frame_rate
    reader = AudioReader(song, processor.sample_rate)
    timings: dict[str, float] = {}
    tqdm = None
    if progress:
        from tqdm.auto import tqdm
    with tempfile.TemporaryDirectory(prefix="cqtml-show-") as scratch:
        t0 = time.perf_counter()
        bar = tqdm(total=contract.frames(reader.duration) or None, unit="frame",
                   desc="CQT", disable=not progress) if tqdm else None
        window = contract.num_frames
        wkw = dict(window=window, num_devices=rig.num_devices,
                   overlap=contract.frames(overlap_s), margin=contract.frames(margin_s))
        ctx_n, chunk = (contract.frames(context_s) if context_s > 0 else 0), contract.frames(1.0)
        # the policy runs while the CQT streams (it needs the song context first: a few seeks)
        ctx = context_from_audio(reader, processor, context=ctx_n, chunk=chunk, window=window)
        gain = None
        full = {} if song_fullness is None else {"fullness": song_fullness}
        if isinstance(song_gain, str):
            gain = SongGain(num_devices=rig.num_devices, gold_version=song_gain, frame_rate=fr,
                            **full)
        elif song_gain is True:
            gain = SongGain(num_devices=rig.num_devices, frame_rate=fr, **full)
        elif song_gain:  # a SongGain made by the caller (bench/teacher_show.py)
            gain = song_gain
        runner = WindowRunner(policy, ctx=ctx, song_gain=gain, **wkw) if ctx is not None else None
        songcqt = cqt_to_disk(reader, processor, Path(scratch) / "cqt.f16",
                              progress=bar.update if bar else None,
                              on_block=runner.feed if runner else None,
                              threaded=runner is not None)
        if bar:
            bar.close()
        timings["cqt_s"] = time.perf_counter() - t0  # with the overlapped policy windows
        timings.update({f"cqt_cpu_{k}": v for k, v in songcqt.stats.cpu.items()})
        t0 = time.perf_counter()
        if runner is not None:
            acts = runner.finish(songcqt.num_frames, songcqt.frames)
        else:
            ran: list = []
            acts = windowed_actions(policy, songcqt, context=ctx_n, chunk=chunk, song_gain=gain,
                                    runner_out=ran, **wkw)
            runner = ran[0]
        gain_info = (gain.describe(runner.song_range) if gain is not None
                     else {"enabled": False})
        timings["policy_tail_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        intens = rig.intensities(acts)
        lim_info: dict[str, Any] = {"enabled": bool(limiter)}
        if limiter:
            lim = FlashLimiter.from_settings(rig.limiter, num_devices=rig.num_devices,
                                             frame_rate=fr)
            levels = lim(intens)
            lim_info.update(lim.report.to_dict(), **{
                "max_flashes": rig.limiter.max_flashes, "window_s": rig.limiter.window_s,
                "threshold": rig.limiter.threshold, "dark_level": rig.limiter.dark_level,
                "rig_threshold": rig.limiter.rig_threshold,
                "rig_as_whole": "mean intensity of all devices"})
        else:
            log(UNSAFE_WARNING)
            levels = np.clip(intens, 0, 1)
        levels = levels.astype(np.float32)
        timings["limiter_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        bpm = detect_tempo(songcqt.onset, fr)
        timings["tempo_s"] = time.perf_counter() - t0
        show = Show(frame_rate=fr, rig=rig, activations=acts, levels=levels,
                    duration=songcqt.duration, bpm=bpm, limiter=lim_info, timings=timings,
                    song=str(song), song_gain=gain_info)
        if out is None:
            return show
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        try:
            t0 = time.perf_counter()
            meta = {"song": Path(song).name, "duration_s": songcqt.duration, "bpm": bpm,
                    "limiter": lim_info, "song_gain": gain_info,
                    "contract": contract.to_dict()}
            if "midi" in outputs:
                meta["midi_bpm"] = write_midi(tmp / "show.mid", levels, rig, fr, bpm)
                timings["midi_s"] = time.perf_counter() - t0
            if "csv" in outputs:
                t1 = time.perf_counter()
                write_csv(tmp / "show.csv", levels, rig, fr)
                timings["csv_s"] = time.perf_counter() - t1
            if "json" in outputs:
                t1 = time.perf_counter()
                write_json(tmp / "show.json", levels, rig, fr, meta, activations=acts)
                timings["json_s"] = time.perf_counter() - t1
            if "overview" in outputs:
                t1 = time.perf_counter()
                write_png(tmp / "overview.png", overview_image(songcqt, levels, rig))
                timings["overview_s"] = time.perf_counter() - t1
            timings["files_s"] = time.perf_counter() - t0
            if "video" in outputs:
                from cqtml_env.show.video import write_preview

                t0 = time.perf_counter()
                write_preview(tmp / "preview.mp4", song=song, songcqt=songcqt, levels=levels,
                              rig=rig, size=video_size, fps=video_fps, progress=progress)
                timings["video_s"] = time.perf_counter() - t0
            names = sorted(p.name for p in tmp.iterdir())
            _commit_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        show.files = {n: out / n for n in names}
        return show


__all__ = ["Show", "make_show", "UNSAFE_WARNING"]
