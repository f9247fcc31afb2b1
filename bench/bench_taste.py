"""A person with a different taste labels through the real page; does the reward model learn it?

    python bench/bench_taste.py            # 300 labels per selection strategy (~15 min, 2 cores)
    python bench/bench_taste.py --quick    # 60 labels, a smoke run (~3 min)

A simulated labeller whose taste differs from the gold scorer's (defined ONLY here, in
:func:`taste`: the bass lamp pumps hard with the kick, the treble lamp is calm and steady)
answers pairs in headless Debian chromium on the real labelling page (Playwright key presses,
server on 127.0.0.1). It reads the two shows and the CQT strip the page received
(``window.cqtml.pair``), scores both with the taste and presses A or B. Two labellers label
at once, one with ``random`` and one with ``uncertain`` pair selection (the shipped model's
smallest margins). The store is snapshotted at 50/100/200/300 labels; each snapshot fine-tunes
the shipped reward model (``finetune_reward_model(init="default")``, as
``cqtml-reward train --init default``) and is scored on held-out clips that no labeller saw
(a different synthetic seed): agreement = share of candidate pairs whose reward-model margin
has the sign of the taste's. The fine-tune's own held-out-by-clip figure is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--autoplay-policy=no-user-gesture-required"]


# -- the person's taste (never shown to the reward model) ------------------------------------
def strip_of(cqt: np.ndarray) -> np.ndarray:
    """The page's CQT strip: mono, low notes first, uint8 (as the server sends it)."""
    return np.round(np.clip(np.asarray(cqt).mean(axis=0), 0, 1) * 255).astype(np.uint8)


def taste(acts: np.ndarray, strip: np.ndarray) -> float:
    """Bass lamp (device 0) high on kicks, low between them; treble lamp (last) steady."""
    acts = np.asarray(acts, np.float32)
    s = np.asarray(strip, np.float32) / 255.0
    low = s[: max(1, s.shape[0] // 6)].mean(axis=0)
    onset = np.maximum(np.diff(low, prepend=low[:1]), 0.0)
    t = min(acts.shape[-1], onset.shape[0])
    bass, onset, treble = acts[0, :t], onset[:t], acts[-1, :t]
    kick = (onset >= np.quantile(onset, 0.85)) & (onset > 0)  # sparse kicks: q may be 0
    if kick.all() or not kick.any():
        pump = 0.0
    else:  # the bass lamp near a kick (this or the next 2 frames) vs elsewhere
        near = kick | np.roll(kick, 1) | np.roll(kick, 2)
        pump = float(bass[near].mean() - bass[~near].mean())
    calm = float(np.abs(np.diff(treble)).mean())
    return pump - 3.0 * calm


# -- labelling through the page ----------------------------------------------------------------
def poll(page, fn: str, arg=None, timeout: float = 30.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = page.evaluate(fn, arg)
        if v:
            return v
        time.sleep(0.01)
    raise TimeoutError(fn)


READY = ("(old) => window.cqtml.pair && !window.cqtml.busy && window.cqtml.pair.pair_id !== old"
         " && window.cqtml.pair.pair_id")
READ = ("() => { const p = window.cqtml.pair; return {a: p.a, b: p.b, bins: p.cqt.bins,"
        " frames: p.cqt.frames, data: p.cqt.data}; }")


PLAYED = ("() => window.cqtml.covered.reduce((a, b) => a + b, 0) / window.cqtml.covered.length")


def start_playing(page, rate: float) -> None:
    """Press space (the page's play key) with the audio sped up ``rate`` times."""
    page.evaluate(f"() => {{ document.getElementById('audio').playbackRate = {float(rate)}; }}")
    page.keyboard.press(" ")


def wait_played(page, fraction: float, rate: float, timeout: float = 60.0) -> float:
    """Wait until the page counts ``fraction`` of the clip as played (both shows watched).

    Frames skipped by a slow animation frame do not count on the page; like a person who
    missed a bit, the labeller plays the clip again (up to 3 times) when it ended short.
    """
    done = f"() => ({PLAYED}) >= {fraction} || document.getElementById('audio').ended"
    for _ in range(3):
        poll(page, done, timeout=timeout)
        got = float(page.evaluate(PLAYED))
        if got >= fraction:
            break
        start_playing(page, rate)  # space on an ended clip plays it from the start
    return got


def page_choice(page) -> str:
    import base64

    p = page.evaluate(READ)
    strip = np.frombuffer(base64.b64decode(p["data"]), np.uint8).reshape(p["bins"], p["frames"])
    return "a" if taste(np.array(p["a"]), strip) >= taste(np.array(p["b"]), strip) else "b"


def snapshot(svc, src: Path, dst: Path) -> None:
    svc.merge()
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".label.lock"))


def label_through_page(svc, url: str, store: Path, names: dict, marks: list[int], work: Path,
                       play_rate: float = 0.0):
    """The labellers answer ``marks[-1]`` pairs each, interleaved; snapshots at each mark.

    ``play_rate > 0``: each labeller first plays the clip (space, at ``play_rate`` x speed)
    until the page counts it as played through, so the store's ``both_played`` is true.
    """
    from cqtml_env.labelling.service import BOTH_PLAYED_FRACTION

    target = min(1.0, BOTH_PLAYED_FRACTION + 0.03)
    from playwright.sync_api import sync_playwright

    snaps, t0, n_ans, played = {}, time.time(), 0, []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            pages, last = {}, {}
            for sel, name in names.items():
                page = browser.new_context().new_page()
                page.goto(f"{url}/?labeller={name}&selection={sel}")
                last[sel] = None
                pages[sel] = page
            for k in range(1, marks[-1] + 1):
                for sel, page in pages.items():
                    last[sel] = poll(page, READY, last[sel])
                    if play_rate > 0:  # all pages play at once
                        start_playing(page, play_rate)
                for page in pages.values():
                    if play_rate > 0:
                        played.append(wait_played(page, target, play_rate))
                    page.keyboard.press(page_choice(page))
                    n_ans += 1
                if k in marks:
                    for sel, page in pages.items():  # the answer is acknowledged
                        poll(page, READY, last[sel])
                    snaps[k] = work / f"snap{k}"
                    snapshot(svc, store, snaps[k])
                    print(f"  {k} labels each, {time.time() - t0:.0f} s", flush=True)
        finally:
            browser.close()
    return snaps, n_ans / (time.time() - t0)


def label_direct(svc, store: Path, names: dict, marks: list[int], work: Path):
    """The labellers answer through the service's API instead of the page (no browser).

    The same pairs, store and taste as through the page, only fast: for the ceiling (how far
    agreement goes with many labels), not for the page's figures.
    """
    import base64

    snaps, t0, n_ans = {}, time.time(), 0
    for k in range(1, marks[-1] + 1):
        for name in names.values():
            p = svc.next_pair(name)
            c = p["cqt"]
            strip = np.frombuffer(base64.b64decode(c["data"]), np.uint8).reshape(c["bins"], c["frames"])
            pick = "a" if taste(np.array(p["a"]), strip) >= taste(np.array(p["b"]), strip) else "b"
            svc.answer(name, p["pair_id"], pick, played_fraction=1.0)
            n_ans += 1
        if k in marks:
            snaps[k] = work / f"snap{k}"
            snapshot(svc, store, snaps[k])
            print(f"  {k} labels each, {time.time() - t0:.0f} s", flush=True)
    return snaps, n_ans / (time.time() - t0)


def played_flags(snap: Path) -> tuple[int, int]:
    """(labels with ``both_played`` true, labels) in a store's label metadata."""
    from cqtml_env.preferences.store import PreferenceDataset

    meta = PreferenceDataset(snap).label_meta()
    return sum(bool(m.get("both_played")) for m in meta), len(meta)


# -- evaluation --------------------------------------------------------------------------------
def heldout_pools(n_clips: int, work: Path):
    from cqtml_env import SyntheticMusic
    from cqtml_env.labelling.service import LabellingService, ServiceConfig

    ds = SyntheticMusic(num_clips=n_clips, seed=4242)
    svc = LabellingService(ds, work / "heldout-store", background=False,
                           config=ServiceConfig(candidates_per_clip=12, seed=7))
    pools = [svc.pool(i) for i in range(n_clips)]
    svc.close()
    out = []
    for p in pools:
        strip = strip_of(p.cqt)
        t = np.array([taste(p.activations(i), strip) for i in range(len(p.levels))])
        out.append((p, t))
    return out


def agreement(model, pools) -> float:
    from cqtml_env.preferences.store import ACTION_SCALE

    hit = tot = 0
    for p, t in pools:
        s = np.asarray(model.score(p.cqt, p.levels.astype(np.float32) / ACTION_SCALE,
                                   calibrated=False), np.float64).ravel()
        for i, j in p.all_pairs():
            if t[i] == t[j] or s[i] == s[j]:
                continue
            hit += int((s[i] > s[j]) == (t[i] > t[j]))
            tot += 1
    return hit / max(1, tot)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="60 labels, 10 held-out clips, 30 epochs")
    ap.add_argument("--marks", default="50,100,200,300", help="label counts to fine-tune at")
    ap.add_argument("--heldout-clips", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=None,
                    help="fine-tune epochs (default: the recipe of cqtml-reward train --init default)")
    ap.add_argument("--lr", type=float, default=None, help="fine-tune peak learning rate")
    ap.add_argument("--patience", type=int, default=None, help="early-stopping patience (epochs)")
    ap.add_argument("--ensemble", type=int, default=None, help="fine-tunes averaged (default: recipe)")
    ap.add_argument("--selections", default="random,uncertain",
                    help="pair selections, one simulated labeller each")
    ap.add_argument("--seed", type=int, default=0, help="seed of the labelling server (clips, pairs)")
    ap.add_argument("--play-rate", type=float, default=4.0,
                    help="the labeller plays each clip through at this speed before answering "
                         "(so both_played is true); 0 = answer without playing")
    ap.add_argument("--direct", action="store_true",
                    help="label through the service API, not the browser (fast; for the ceiling)")
    ap.add_argument("--pairs-per-clip", type=int, default=3, help="pairs labelled per clip")
    ap.add_argument("--keep", default=None, help="keep the store snapshots here (snapN/, sel/)")
    ap.add_argument("--label-only", action="store_true", help="stop after labelling (with --keep)")
    ap.add_argument("--from-snapshots", default=None,
                    help="skip labelling: fine-tune on snapshots kept by an earlier --keep")
    ap.add_argument("--refit-every", type=int, default=0,
                    help="extra labeller: 'uncertain' on a server that refits its model every N "
                         "answers (cqtml-label serve --refit-every); 0 = skip it")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--save-model", default=None,
                    help="keep the model fine-tuned on all random-selection labels here (for "
                         "agents/grpo.py --reward-model DIR)")
    args = ap.parse_args(argv)
    if args.quick:
        args.marks, args.heldout_clips = "20,40,60", 10
    marks = sorted(int(m) for m in args.marks.split(","))
    if not args.direct and not args.from_snapshots and not Path(CHROMIUM).is_file():
        print("skipped: needs Debian chromium (apt-get install -y chromium)")
        return 0
    import torch

    torch.set_num_threads(1)
    from cqtml_env import RewardModel, SyntheticMusic
    from cqtml_env.labelling.app import ThreadedServer, create_app
    from cqtml_env.labelling.service import LabellingService, ServiceConfig

    t_start = time.time()
    work = Path(tempfile.mkdtemp(prefix="bench-taste-"))
    pairs_per_clip = args.pairs_per_clip
    data = SyntheticMusic(num_clips=-(-marks[-1] // pairs_per_clip) + 2, seed=0)
    names = {sel: f"taste-{sel}" for sel in args.selections.split(",")}
    variants, played, rate = dict(names), {}, float("nan")
    if args.from_snapshots:
        snaps = {n: Path(args.from_snapshots) / f"snap{n}" for n in marks}
        snaps2 = {n: Path(args.from_snapshots) / "refit" / f"snap{n}" for n in marks}
        if snaps2[marks[-1]].is_dir():
            variants["uncertain+refit"] = "taste-uncertain-refit"
    else:
        store = work / "store"
        svc = LabellingService(data, store, config=ServiceConfig(
            candidates_per_clip=12, pairs_per_clip=pairs_per_clip, prefetch=4, undo_window_s=0.0,
            seed=args.seed))
        srv = ThreadedServer(create_app(svc)).start()
        print(f"labelling {marks[-1]} pairs x {len(names)} selections through {srv.url} ...")
        try:
            if args.direct:
                snaps, rate = label_direct(svc, store, names, marks, work)
            else:
                snaps, rate = label_through_page(svc, srv.url, store, names, marks, work,
                                                 play_rate=args.play_rate)
        finally:
            srv.stop()
            svc.close()
        if args.refit_every > 0:  # its own server and store: its refits see only its own labels
            store2, work2 = work / "store-refit", work / "refit"
            work2.mkdir()
            svc2 = LabellingService(data, store2, config=ServiceConfig(
                candidates_per_clip=12, pairs_per_clip=pairs_per_clip, prefetch=4,
                undo_window_s=0.0, refit_every=args.refit_every, seed=args.seed))
            srv2 = ThreadedServer(create_app(svc2)).start()
            name2 = "taste-uncertain-refit"
            print(f"labelling {marks[-1]} pairs, uncertain + refit every {args.refit_every} ...")
            try:
                snaps2, _ = label_through_page(svc2, srv2.url, store2, {"uncertain": name2},
                                               marks, work2, play_rate=args.play_rate)
            finally:
                srv2.stop()
                svc2.close()
            print(f"  refits: {[round(r.get('agreement', float('nan')), 3) for r in svc2.refits]}")
            variants["uncertain+refit"] = name2
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("store", "store-refit", ".label.lock"))
    played = played_flags(snaps[marks[-1]])
    print(f"both_played: {played[0]} of {played[1]} labels", flush=True)
    if args.label_only:
        return 0
    t_label = time.time() - t_start
    from cqtml_env.reward.finetune import FinetuneRecipe, finetune_reward_model

    pools = heldout_pools(args.heldout_clips, work)
    from cqtml_env.reward.model import TASTE_GOLD_VERSION

    shipped = RewardModel.load_default(TASTE_GOLD_VERSION)  # what init="default" starts from
    res = {"shipped": agreement(shipped, pools), "rows": [], "answers_per_s": rate,
           "label_seconds": t_label, "both_played": played, "seed": args.seed}
    recipe = {k: v for k, v in (("lr", args.lr), ("epochs", args.epochs),
                                ("patience", args.patience)) if v is not None}
    cfg = replace(FinetuneRecipe().train_config(0), **recipe) if recipe else None
    ens = {"ensemble": args.ensemble} if args.ensemble else {}
    for n in marks:
        row = {"labels": n}
        for sel, name in variants.items():
            snap = snaps2[n] if sel == "uncertain+refit" else snaps[n]
            model, rep = finetune_reward_model([snap], work / f"ft-{sel}-{n}", init="default",
                                               person=name, config=cfg, progress=False, **ens)
            row[sel] = agreement(model, pools)
            row[f"{sel}_split"] = rep["person"]["agreement_finetuned"]
            row[f"{sel}_split_init"] = rep["person"]["agreement_init"]
        res["rows"].append(row)
        print(f"  fine-tuned at {n}", flush=True)
    res["total_seconds"] = time.time() - t_start
    n_pairs = sum(len(p.all_pairs()) for p, _ in pools)
    print(f"\ntaste labeller through the page: {rate:.1f} answers/s, labelling {t_label:.0f} s,"
          f" total {res['total_seconds']:.0f} s")
    print(f"fine-tune: {json.dumps(rep['finetune'])}")
    print(f"both_played ({marks[-1]} labels per labeller): {played[0]} of {played[1]} labels")
    print(f"held-out: {len(pools)} unseen clips, {n_pairs} candidate pairs; "
          f"shipped (gold-trained) model agrees with the taste on {res['shipped']:.3f}\n")
    print("| labels | " + " | ".join(f"{v}: held-out clips" for v in variants) + " | "
          + " | ".join(f"{v}: fine-tune split (shipped)" for v in variants) + " |")
    print("|---:|" + "---:|" * (2 * len(variants)))
    for r in res["rows"]:
        print(f"| {r['labels']} | " + " | ".join(f"{r[v]:.3f}" for v in variants) + " | "
              + " | ".join(f"{r[v + '_split']:.3f} ({r[v + '_split_init']:.3f})"
                           for v in variants) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.save_model:
        shutil.copytree(work / f"ft-{next(iter(names))}-{marks[-1]}", args.save_model,
                        dirs_exist_ok=True)
        print(f"fine-tuned model ({marks[-1]} random labels): {args.save_model}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
