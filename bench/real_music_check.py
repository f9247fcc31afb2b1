"""Reward-model transfer to real recorded music: agreement with the gold scorer's ordering.

    python bench/real_music_check.py --prepare /tmp/realmusic      # build the real-music folder
    python bench/real_music_check.py --data folder:/tmp/realmusic --clips 64

``--prepare DIR`` downloads a few Debian (main) game-soundtrack packages with
``apt-get download`` (no install), extracts them with ``dpkg-deb -x`` and writes excerpts of
their tracks as FLAC into ``DIR/<genre>/`` plus ``DIR/SOURCES.md`` (package, version,
licence, files, minutes), written last; a rerun on a finished folder downloads nothing.
``--split tune`` / ``--split check`` fetch only one half of ``SOURCES`` (``make train``
trains on the tune half and reports on the check half); ``--split probe`` a third set, added
after choices had been made on check; ``--split holdout`` a fourth, added after a choice had
been made with the probe set (README, gold-v5), looked at once, for the final report;
``--split fresh`` a fifth, added after the holdout set had been looked at; ``--split reserve``
a sixth, added after fresh had been looked at and first scored in stop 29's final table;
``--split vault`` a seventh, added when reserve had been scored (stop 30), kept unscored until
that stop's choices were made; ``--split spare`` an eighth, added when the vault had been
scored (stop 31): one composer's electronic game loops, a style no other split has, kept
unscored for the next choice; ``--split encore`` a ninth, added when spare had been scored
(stop 34), kept unscored until a stop's choices were made, then scored once (stop 35);
``--split coda`` a tenth, added then and kept unscored for the next choice. The tune half
gained two game scores in stop 29 (Flare, FreedroidRPG). The audio stays outside the
repository.

The check itself does what ``cqtml-reward eval`` does (``reward_train.evaluate_fresh``:
fresh ``CandidateFactory`` candidates per clip, gold vs reward-model scores), but on ``N``
clips of any data spec, picked with the same seeded permutation as ``agents/evaluate.py``,
and also per top-level folder (genre).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# (package, genre folder, glob under the extracted tree, offset s, excerpt s, max files, licence,
#  split). The split is how issue 13's numbers use the music: policies are tuned and trained on
# "tune" and reported on "check", which no choice was made on (``--split``; ``make train``).
SOURCES = [
    ("fretsonfire-songs-muldjord", "metal", "usr/share/games/fretsonfire/data/songs/*/*/song.ogg",
     20.0, 120.0, None, "CC-BY-SA-3.0", "tune"),
    ("fretsonfire-songs-sectoid", "rock", "usr/share/games/fretsonfire/data/songs/*/*/song.ogg",
     20.0, 120.0, None, "Expat (MIT-style)", "check"),
    ("singularity-music", "electronic_ambient", "usr/share/games/singularity/music/**/*.ogg",
     30.0, 70.0, None, "CC-BY-SA-3.0", "tune"),
    ("hyperrogue-music", "orchestral_world", "usr/share/hyperrogue/music/*.ogg",
     0.0, 50.0, None, "CC-BY-SA-3.0", "check"),
    ("drascula-music", "adventure_score", "usr/share/scummvm/drascula/audio/*.ogg",
     0.0, 50.0, 12, "Drascula-License (BASS-style, free redistribution; Debian main)", "tune"),
    # more training music (stop 29): two more game scores, so the students learn from five
    ("flare-game", "fantasy_flare", "usr/share/games/flare/mods/fantasycore/music/*.ogg",
     20.0, 60.0, 12, "CC-BY-SA-3.0+", "tune"),
    ("freedroidrpg-data", "game_freedroid", "usr/share/freedroidrpg/data/sound/music/*.ogg",
     20.0, 60.0, 12, "GPL-2+", "tune"),
    ("asc-music", "soundtrack_asc", "usr/share/games/asc/music/*.mp3",
     30.0, 100.0, None, "GPL-2+", "check"),
    # "probe": added after the ViT variants were compared on "check" (README, vit-bands), to
    # report choices made on check on music no choice was made on; never tuned on
    ("warzone2100-music", "soundtrack_warzone", "usr/share/games/warzone2100/music/albums/*/*.opus",
     30.0, 60.0, 12, "CC-BY-SA-3.0 or GPL-2+ (each album's license.txt)", "probe"),
    ("extremetuxracer-data", "game_etr", "usr/share/games/etr/music/*.ogg",
     10.0, 60.0, None, "GPL-2+", "probe"),
    # "holdout": added when the probe set had been used for choices (README, gold-v5: the
    # default policy's inputs), to report on music nothing was chosen on; looked at once
    ("supertux-data", "game_supertux", "usr/share/games/supertux2/music/*/*.ogg",
     10.0, 45.0, 12, "GPL-2+ (data/music/*)", "holdout"),
    ("planetblupi-music-ogg", "game_blupi", "usr/share/planetblupi/music/*.ogg",
     20.0, 60.0, None, "GPL-3+", "holdout"),
    # "fresh": added when the holdout set had been looked at (stop 24's final table), to report
    # the next choices (README, "GRPO after imitation") on music nothing was chosen on
    ("hedgewars-data", "game_hedgewars", "usr/share/games/hedgewars/Data/Music/*.ogg",
     10.0, 45.0, 12, "GPL-2 (Debian copyright, Files: *)", "fresh"),
    ("wesnoth-1.16-music", "game_wesnoth", "usr/share/games/wesnoth/1.16/data/core/music/*.ogg",
     20.0, 45.0, 12, "GPL-2+", "fresh"),
    # "reserve": added when the fresh set had been looked at (stop 27), kept unheard and unscored
    # until a stop's choices are all made, then looked at once for that stop's final table
    ("xmoto-data", "game_xmoto", "usr/share/games/xmoto/Textures/Musics/*.ogg",
     15.0, 45.0, None, "GPL-2+", "reserve"),
    ("lincity-ng-data", "game_lincity", "usr/share/games/lincity-ng/music/default/*.ogg",
     30.0, 60.0, None, "GPL-2+", "reserve"),
    ("openclonk-data", "game_openclonk", "usr/share/games/openclonk/Music.ocg/*.ogg",
     30.0, 45.0, None, "CC-BY-3.0 (Music.ocg/authors.txt: K-Pone) or CC0", "reserve"),
    # "vault": added when the reserve set had been scored (stop 30), kept unscored until the
    # stop's choices were all made, then looked at once for its final table
    ("warmux-data", "game_warmux", "usr/share/games/warmux/music/ingame/*.ogg",
     20.0, 45.0, 12, "GPL-2+", "vault"),
    ("megaglest-data", "game_megaglest", "usr/share/games/megaglest/techs/megapack/factions/*/music/*.ogg",
     20.0, 45.0, None, "CC-BY-SA-3.0", "vault"),
    ("lugaru-data", "game_lugaru", "usr/share/games/lugaru/Sounds/Music*.ogg",
     10.0, 45.0, None, "CC-BY-SA-3.0 (Data/*)", "vault"),
    # "spare": added when the vault had been scored (stop 31), kept unscored for the next
    # stop's choices: Kenta Cho's shoot-'em-up loops (electronic; BSD-2-Clause-style licence)
    ("torus-trooper-data", "electronic_tt", "usr/share/games/torus-trooper/sounds/musics/*.ogg",
     5.0, 45.0, None, "BSD-2-Clause (Kenta Cho)", "spare"),
    ("gunroar-data", "electronic_gr", "usr/share/games/gunroar/sounds/musics/*.ogg",
     5.0, 45.0, None, "BSD-2-Clause (Kenta Cho)", "spare"),
    ("mu-cade-data", "electronic_mcd", "usr/share/games/mu-cade/sounds/musics/*.ogg",
     5.0, 45.0, None, "BSD-2-Clause (Kenta Cho)", "spare"),
    ("noiz2sa-data", "electronic_noiz2sa", "usr/share/games/noiz2sa/sounds/stg*.ogg",
     5.0, 45.0, None, "BSD-2-Clause (Kenta Cho)", "spare"),
    ("titanion-data", "electronic_ttn", "usr/share/games/titanion/sounds/musics/*.ogg",
     5.0, 45.0, None, "BSD-2-Clause (Kenta Cho)", "spare"),
    # "encore": added when spare had been scored (stop 34), kept unscored until a stop's
    # choices are all made, then looked at once: an adventure score, tracker-style game tunes,
    # two puzzle-game themes and a Jamendo pop song
    ("adonthell-data", "game_adonthell", "usr/share/games/adonthell/games/wastesedge/audio/at-demo-*.ogg",
     10.0, 60.0, 8, "GPL-2+", "encore"),
    ("btanks-data", "game_btanks", "usr/share/games/btanks/data/tunes/*.ogg",
     15.0, 60.0, 5, "GPL-2 with the Battle Tanks exception (Debian copyright)", "encore"),
    ("caveexpress-data", "game_caveexpress", "usr/share/games/caveexpress/sounds/music-[0-9].ogg",
     0.0, 60.0, None, "GPL-3+", "encore"),
    ("frozen-bubble-data", "game_frozenbubble", "usr/share/games/frozen-bubble/snd/*zik*.ogg",
     20.0, 60.0, None, "GPL-2", "encore"),
    ("pink-pony-data", "pop_pinkpony", "usr/share/games/pink-pony/music/*.mp3",
     20.0, 60.0, None, "CC-BY-SA-3.0 (Renich, Jamendo)", "encore"),
    # "coda": added when encore had been scored (stop 35), kept unscored for the next stop's
    # choices: a space shooter's score, puzzle and arcade themes, classical pieces rendered from
    # MIDI (FreeDink's free replacements)
    ("starfighter-data", "game_starfighter", "usr/share/starfighter/music/*.ogg",
     20.0, 45.0, None, "GPL-2+ (Debian copyright, Files: *)", "coda"),
    ("hex-a-hop-data", "game_hexahop", "usr/share/games/hex-a-hop/hex-a-hop/music*.ogg",
     10.0, 45.0, None, "CC-BY-SA-3.0", "coda"),
    ("freedink-data", "midi_freedink", "usr/share/games/dink/dink/Sound/*.ogg",
     10.0, 45.0, 5, "public-domain works and CC-BY-3.0 (README-REPLACEMENTS)", "coda"),
    ("funnyboat", "game_funnyboat", "usr/share/games/funnyboat/data/JDruid*.ogg",
     20.0, 45.0, None, "GPL-2", "coda"),
    ("bumprace-data", "game_bumprace", "usr/share/games/bumprace/sound/Flying*.ogg",
     10.0, 45.0, None, "CC-BY-3.0 (Alexandr Zhelanov)", "coda"),
]
SPLITS = ("all", "tune", "check", "probe", "holdout", "fresh", "reserve", "vault", "spare",
          "encore", "coda")


def sources(split: str = "all") -> list[tuple]:
    """The ``SOURCES`` rows of one split (one of ``SPLITS``; ``all``: every row)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return [row for row in SOURCES if split in ("all", row[7])]


def prepared(out: Path, split: str = "all") -> bool:
    """True when ``out`` already holds a finished ``--prepare`` of ``split``: its SOURCES.md
    (written last) and a non-empty folder per genre, so a rerun downloads nothing."""
    return (out / "SOURCES.md").is_file() and all(
        (out / row[1]).is_dir() and any((out / row[1]).glob("*.flac")) for row in sources(split))


def _read(path: Path, offset: float, seconds: float) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        sr = f.samplerate
        f.seek(min(int(offset * sr), max(f.frames - int(seconds * sr), 0)))
        return f.read(frames=int(seconds * sr), dtype="float32", always_2d=True), sr


def _download(pkg: str, debs: Path) -> None:
    """``apt-get download pkg``; a fresh machine may have no package lists yet, so as root
    the lists are fetched once (``apt-get update``) and the download retried."""
    cmd = ["apt-get", "download", "-q", pkg]
    if subprocess.run(cmd, cwd=debs).returncode == 0:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"apt-get download {pkg} failed (no package lists? run apt-get "
                           "update as root)")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(cmd, cwd=debs, check=True)


def prepare(out: Path, work: Path, split: str = "all") -> None:
    """Download, extract and excerpt the packages of ``split`` into ``out`` (nothing to do
    when :func:`prepared`). ``work`` must lie outside ``out``: it holds .ogg trees."""
    import soundfile as sf

    rows = sources(split)
    if prepared(out, split):
        print(f"{out}: already prepared ({split}), nothing to download")
        return
    if out.resolve() in work.resolve().parents or out.resolve() == work.resolve():
        raise ValueError(f"--work {work} lies inside {out}; the audio folder would read its trees")

    out.mkdir(parents=True, exist_ok=True)
    debs, tree = work / "debs", work / "x"
    debs.mkdir(parents=True, exist_ok=True)
    tree.mkdir(parents=True, exist_ok=True)  # dpkg-deb -x creates only the last level
    lines = ["# Real recorded music for CQTML transfer checks", "",
             "Built by `python bench/real_music_check.py --prepare " + str(out) + "`: Debian "
             "(bookworm, main) packages fetched with `apt-get download`, extracted with "
             "`dpkg-deb -x`, excerpts written as FLAC (native sample rate, stereo). "
             "Frets-on-Fire songs: the `song.ogg` backing stem and the `guitar.ogg` lead stem "
             "are summed (peak-limited to 0.99) to give the full band mix.", ""]
    total = 0.0
    for pkg, genre, pattern, offset, seconds, max_files, lic, _ in rows:
        if not list(debs.glob(f"{pkg}_*.deb")):
            _download(pkg, debs)
        deb = next(debs.glob(f"{pkg}_*.deb"))
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                                 text=True, check=True).stdout.strip()
        if not (tree / pkg).is_dir():  # extract beside, then rename: no half trees after a crash
            part = tree / f"{pkg}.part"
            shutil.rmtree(part, ignore_errors=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(part)], check=True)
            part.rename(tree / pkg)
        files = sorted((tree / pkg).glob(pattern))
        if max_files is not None:  # the longest tracks
            files = sorted(sorted(files, key=lambda p: -sf.info(str(p)).duration)[:max_files])
        (out / genre).mkdir(exist_ok=True)
        minutes, names = 0.0, []
        for src in files:
            audio, sr = _read(src, offset, seconds)
            guitar = src.with_name("guitar.ogg")
            if src.name == "song.ogg" and guitar.is_file():
                g, _ = _read(guitar, offset, seconds)
                n = min(len(audio), len(g))
                audio = audio[:n] + g[:n]
                audio *= min(1.0, 0.99 / max(float(np.abs(audio).max()), 1e-9))
                stem = src.parent.name
            else:
                stem = src.stem
            name = f"{pkg.split('-')[0]}_{stem}".replace(" ", "_").lower() + ".flac"
            sf.write(str(out / genre / name), audio, sr, subtype="PCM_16")
            minutes += len(audio) / sr / 60
            names.append(f"`{src.relative_to(tree / pkg)}` -> `{genre}/{name}`")
        total += minutes
        lines += [f"## {pkg} {version} ({genre})", f"- licence: {lic} "
                  f"(see /usr/share/doc/{pkg}/copyright in the package)",
                  f"- excerpt: {seconds:g} s from {offset:g} s per track; {len(files)} files, "
                  f"{minutes:.1f} min", ""] + [f"  - {n}" for n in names] + [""]
        print(f"{pkg} {version}: {len(files)} files, {minutes:.1f} min -> {genre}/", flush=True)
    lines.insert(4, f"Split: {split}. Total: {total:.1f} min.\n")
    tmp = out / "SOURCES.md.tmp"  # written last and atomically: its presence marks "done"
    tmp.write_text("\n".join(lines))
    tmp.replace(out / "SOURCES.md")
    print(f"total {total:.1f} min in {out}")


def check(data: str, clips: int, seed: int, candidates: int, model_path: str,
          gold_version: str | None = None) -> dict:
    """Agreement of a reward model with the gold ordering on ``clips`` clips of ``data``;
    ``gold_version`` None: the version the model was trained on (its metrics), else gold-v1."""
    from cqtml_env import GoldScorer
    from cqtml_env.datasets.spec import make_dataset
    from cqtml_env.reward.evaluation import evaluate_fresh
    from cqtml_env.reward.model import RewardModel

    model = (RewardModel.load_default() if model_path == "default"
             else RewardModel.from_pretrained(model_path))
    version = gold_version or (model.config.metrics or {}).get("gold_version", "gold-v1")
    scorer = GoldScorer(num_devices=model.config.num_devices, frame_rate=model.config.frame_rate,
                        version=version)
    ds = make_dataset(data)
    rng = np.random.default_rng(seed)  # same clip choice as agents/evaluate.py --seed
    idx = np.sort(rng.permutation(len(ds))[:clips])
    t0 = time.perf_counter()
    cqts = ds.get_many(idx)
    groups: dict[str, list[int]] = {}
    for j, i in enumerate(idx):
        info = ds.clip_info(int(i))
        groups.setdefault(str(info.get("folder", "")).split("/")[0] or ".", []).append(j)
    out = {"data": data, "gold_version": version, "clips_available": len(ds),
           "clips": int(len(idx)),
           "all": evaluate_fresh(model, cqts, candidates=candidates, seed=seed, scorer=scorer)}
    if len(groups) > 1:
        out["by_folder"] = {g: evaluate_fresh(model, cqts[js], candidates=candidates, seed=seed,
                                              scorer=scorer)
                            for g, js in sorted(groups.items())}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="folder:/tmp/realmusic", help="data set spec")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--candidates", type=int, default=64, help="candidate actions per clip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="default", help="'default' or a reward-model weights path")
    ap.add_argument("--gold-version", default=None,
                    help="gold scorer to agree with (default: the one the model was trained on)")
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("--prepare", metavar="DIR", default=None,
                    help="build the real-music folder in DIR (needs apt-get, dpkg-deb) and exit")
    ap.add_argument("--work", default="/tmp/realmusic_pkgs", help="--prepare: .debs, extracted trees")
    ap.add_argument("--split", choices=SPLITS, default="all",
                    help="--prepare: only the packages of one split (see SOURCES)")
    args = ap.parse_args(argv)
    if args.prepare:
        needs_apt = not prepared(Path(args.prepare), args.split)
        if needs_apt and not (shutil.which("dpkg-deb") and shutil.which("apt-get")):
            sys.exit("--prepare needs a Debian system (apt-get, dpkg-deb); "
                     "train on synthetic music instead: make train DATA=synthetic")
        prepare(Path(args.prepare), Path(args.work), args.split)
        return 0
    res = check(args.data, args.clips, args.seed, args.candidates, args.model, args.gold_version)
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    a = res["all"]
    print(f"\nreward model vs {res['gold_version']} on {a['clips']} clips of {args.data}: pairwise agreement "
          f"{a['acc_gold_sampled_pairs']:.3f} (all pairs {a['acc_gold_all_pairs']:.3f}), "
          f"Spearman per clip {a['spearman_per_clip']:.3f}, pooled {a['spearman_pooled']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
