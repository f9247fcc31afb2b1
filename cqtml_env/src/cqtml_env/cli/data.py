"""``cqtml-data``: inspect a data set, or precompute its CQTs into the feature cache.

    cqtml-data info SPEC [--max-duration 5]
    cqtml-data cache SPEC --cache-dir DIR --workers N --max-duration 5

SPEC is what :func:`cqtml_env.make_dataset` takes: synthetic | synthetic:N | folder:PATH |
fma[:PATH] | musicnet[:PATH] (no PATH: $CQTML_DATA/fma, $CQTML_DATA/musicnet). Precomputing once makes every later epoch a cache read.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

_WORKER_DS: Any = None


def _dataset_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kind = args.spec.partition(":")[0].lower()
    kw: dict[str, Any] = {"max_duration": args.max_duration, "seed": args.seed}
    if kind == "fma":
        kw["subset"] = args.subset
    if kind in ("fma", "musicnet") and args.split is not None:
        kw["split"] = args.split
    if kind in ("folder", "fma", "musicnet"):
        kw.update(validate=args.validate, min_duration=args.min_duration, clip_hop=args.clip_hop,
                  max_clips_per_file=args.max_clips_per_file)
    return kw


def _build(args: argparse.Namespace, **extra: Any) -> tuple[Any, list[str]]:
    """The data set and the warnings its construction raised (printed, not lost)."""
    from cqtml_env.datasets.spec import make_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = make_dataset(args.spec, **_dataset_kwargs(args), **extra)
    return ds, [str(w.message) for w in caught]


def _print_skipped(ds: Any, limit: int = 20, file: Any = None) -> None:
    from cqtml_env.features.audio import display_path

    file = file or sys.stdout
    skipped = list(getattr(ds, "skipped", []))
    if not skipped:
        print("skipped files: none", file=file)
        return
    counts = Counter(r.split(":")[0] for _, r in skipped)
    print(f"skipped files: {len(skipped)} (" + ", ".join(f"{n} {r}" for r, n in counts.most_common()) + ")", file=file)
    for path, reason in skipped[:limit]:
        print(f"  {display_path(path)}: {display_path(reason)}", file=file)
    if len(skipped) > limit:
        print(f"  ... {len(skipped) - limit} more", file=file)


def cmd_info(args: argparse.Namespace) -> int:
    from cqtml_env.features.audio import display_path

    ds, _ = _build(args)
    p = ds.processor
    print(f"data set: {display_path(repr(ds))}")
    print(f"clips: {len(ds)}")
    files = getattr(ds, "files", None)
    if files is not None:
        total = sum(f.duration for f in files)
        print(f"files: {len(files)} usable, {total / 60:.1f} min of audio")
    print(f"clip: {p.max_duration:g} s -> CQT {list(p.shape)} at {p.sample_rate} Hz")
    if files:
        genres = Counter(f.meta.get("genre_top") for f in files if f.meta.get("genre_top"))
        if genres:
            print("genres: " + ", ".join(f"{g} {n}" for g, n in genres.most_common()))
    problems = getattr(ds, "label_problems", None)
    if problems:
        print(f"label problems: {len(problems)} (first: {problems[0]})")
    _print_skipped(ds)
    return 0


def _init_worker(ds: Any) -> None:
    global _WORKER_DS
    warnings.simplefilter("ignore")
    ds.output_format = "cqt"
    _WORKER_DS = ds


def _work(indices: list[int]) -> tuple[int, int, int, int, list[tuple[str, str]]]:
    """Compute (or find) the CQTs of ``indices``: (count, good, hits, misses, new failures).

    Clips found bad while decoding are skipped and come back as failures (file, reason),
    like the files skipped up front: one bad file never stops the run.
    """
    ds = _WORKER_DS
    before_hits, before_miss = ds.cache.hits, ds.cache.misses
    before_skipped = len(getattr(ds, "skipped", []))
    if hasattr(ds, "get_usable"):
        good = len(ds.get_usable(indices)[1])
    else:  # pragma: no cover - data sets outside this package
        good = len(ds.get_many(indices))
    failures = list(getattr(ds, "skipped", [])[before_skipped:])
    hits, misses = ds.cache.hits - before_hits, ds.cache.misses - before_miss
    return len(indices), good, hits, misses, failures


def cmd_cache(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cqtml_env.features.cache import FeatureCache

    cache = FeatureCache(args.cache_dir)
    ds, _ = _build(args, cache=cache)
    n = len(ds) if args.limit is None else min(len(ds), args.limit)
    chunks = [list(range(i, min(i + args.chunk, n))) for i in range(0, n, args.chunk)]
    hits = misses = good = 0
    failures: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    bar = tqdm(total=n, unit="clip", desc="CQT cache", disable=args.no_progress, file=sys.stderr)
    if args.workers <= 1:
        _init_worker(ds)
        results = (_work(c) for c in chunks)
        for done, g, h, m, fails in results:
            hits, misses, good = hits + h, misses + m, good + g
            failures += fails
            bar.update(done)
    else:
        from cqtml_env.warmup import warm_numba_caches

        warm_numba_caches()  # compile librosa's kernels here, before workers race to do it
        with ProcessPoolExecutor(args.workers, initializer=_init_worker, initargs=(ds,)) as pool:
            futures = [pool.submit(_work, c) for c in chunks]
            for fut in as_completed(futures):
                done, g, h, m, fails = fut.result()
                hits, misses, good = hits + h, misses + m, good + g
                failures += fails
                bar.update(done)
    bar.close()
    dt = time.perf_counter() - t0
    from cqtml_env.features.audio import display_path

    computed = misses - (n - good)  # a bad clip is a miss that was not computed
    print(
        f"cached {good} clips of {display_path(args.spec)} in {dt:.1f} s: {computed} computed, "
        f"{hits} already cached; cache {display_path(cache.root)} holds {len(cache)} entries "
        f"({cache.size_bytes() / 1e6:.1f} MB)"
    )
    failures = list({p: (p, r) for p, r in reversed(failures)}.values())[::-1]  # one per file
    if good < n:
        print(f"skipped while decoding: {n - good} of {n} clips, in {len(failures)} file(s) "
              "(not cached; listed below)")
    have = list(getattr(ds, "skipped", []))  # with --workers 1 the workers' ds is this one
    seen = {p for p, _ in have}
    ds.skipped = have + [(p, r) for p, r in failures if p not in seen]
    _print_skipped(ds)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cqtml-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("spec", help="synthetic | synthetic:N | folder:PATH | fma:PATH | musicnet:PATH")
        p.add_argument("--max-duration", type=float, default=5.0, help="clip length in s (5)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--subset", default="small", help="FMA subset (small)")
        p.add_argument("--split", default=None, help="FMA train/val/test, MusicNet train/test")
        p.add_argument("--validate", default="probe", choices=["header", "probe", "full"],
                       help="how hard to check files up front (probe)")
        p.add_argument("--min-duration", type=float, default=1.0,
                       help="skip files shorter than this many s (1.0)")
        p.add_argument("--clip-hop", type=float, default=None,
                       help="s between clip starts in a file (default: max-duration)")
        p.add_argument("--max-clips-per-file", type=int, default=None)

    common(sub.add_parser("info", help="print size, clip count and skipped files"))
    p = sub.add_parser("cache", help="precompute all CQTs into the feature cache")
    common(p)
    p.add_argument("--cache-dir", default=None,
                   help="cache root (default: $CQTML_CACHE_DIR or ~/.cache/cqtml)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--chunk", type=int, default=8, help="clips per task (one librosa call)")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips")
    p.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            return cmd_info(args)
        return cmd_cache(args)
    except (ValueError, FileNotFoundError) as exc:
        from cqtml_env.features.audio import display_path

        print(f"cqtml-data: error: {display_path(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
