"""``cqtml-prefs``: generate, validate, inspect preference pairs; import human labels."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict

import numpy as np


def _generate(args: argparse.Namespace) -> int:
    from cqtml_env.datasets.spec import make_dataset
    from cqtml_env.preferences.generate import generate_preferences

    kwargs = {"seed": args.data_seed} if args.data.startswith("synthetic") else {}
    ds = make_dataset(args.data, **kwargs)
    prefs = generate_preferences(
        ds,
        args.out,
        num_clips=args.clips,
        candidates_per_clip=args.candidates,
        pairs_per_clip=args.pairs,
        labeller=args.labeller,
        temperature=args.temperature,
        epsilon=args.epsilon,
        seed=args.seed,
        clips_per_shard=args.clips_per_shard,
        near_fraction=args.near_fraction,
        progress=not args.quiet,
        description=f"cqtml-prefs generate --data {args.data}",
    )
    print(
        f"wrote {prefs.num_pairs} pairs over {sum(s.get('clips', 0) for s in prefs.shards)} "
        f"clips to {args.out}"
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from cqtml_env.preferences.store import PreferenceDataset

    problems = PreferenceDataset(args.dir).validate()
    for p in problems:
        print(p)
    print(f"{args.dir}: {len(problems)} problem(s)" if problems else "ok")
    return 2 if problems else 0


def _info(args: argparse.Namespace) -> int:
    from cqtml_env.preferences.store import PreferenceDataset

    ds = PreferenceDataset(args.dir, strict=False)
    arr = ds.load()
    by_lab = defaultdict(int)
    for k in arr.labeller:
        by_lab[ds.manifest["labellers"][k]] += 1
    by_src = defaultdict(list)
    for s, g in zip(arr.source, arr.gold):
        by_src[ds.sources[s]].append(g)
    info = {
        "format": ds.manifest["format"],
        "version": ds.manifest["version"],
        "clips": len(arr.cqt),
        "candidates": len(arr.actions),
        "pairs": len(arr.pairs),
        "pairs_by_labeller": dict(by_lab),
        "mean_gold_by_source": {  # candidates with bad gold are reported, not averaged
            k: round(float(np.mean(np.asarray(v)[np.isfinite(v)])), 4)
            for k, v in sorted(by_src.items())
        },
        "generation": ds.manifest.get("generation", {}),
    }
    print(json.dumps(info, indent=1))
    return 0


def _add_human(args: argparse.Namespace) -> int:
    """CSV columns: shard, first, second, label (1 = first preferred, 0 = second, 0.5 = equal)."""
    from cqtml_env.preferences.store import PreferenceDataset

    ds = PreferenceDataset(args.dir)
    rows: dict[str, list] = defaultdict(list)
    with open(args.csv, newline="") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                rows[row["shard"]].append(
                    (int(row["first"]), int(row["second"]), float(row["label"]))
                )
            except (KeyError, ValueError) as exc:
                print(f"{args.csv} line {i}: bad row {row} ({exc})", file=sys.stderr)
                return 1
    for shard, items in rows.items():
        arr = np.asarray(items, dtype=np.float64)
        name = ds.add_labels(shard, arr[:, :2].astype(np.int32), arr[:, 2], labeller="human")
        print(f"{name}: {len(items)} human labels over {shard}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cqtml-prefs", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="candidates + gold-labelled pairs for a data set")
    g.add_argument("--data", default="synthetic:256", help="data set spec (make_dataset)")
    g.add_argument("--data-seed", type=int, default=0, help="seed of synthetic data")
    g.add_argument("--out", required=True, help="new directory for the pairs")
    g.add_argument("--clips", type=int, default=None, help="use the first N clips")
    g.add_argument("--candidates", type=int, default=64, help="candidate actions per clip")
    g.add_argument("--pairs", type=int, default=128, help="labelled pairs per clip")
    g.add_argument("--labeller", choices=["oracle", "bt", "mistake"], default="oracle")
    g.add_argument("--temperature", type=float, default=0.02, help="bt: sigmoid temperature")
    g.add_argument("--epsilon", type=float, default=0.1, help="mistake: flip probability")
    g.add_argument("--near-fraction", type=float, default=0.5, help="share of close pairs")
    g.add_argument("--clips-per-shard", type=int, default=64)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(fn=_generate)
    v = sub.add_parser("validate", help="report bad rows (file and row); exit 2 if any")
    v.add_argument("dir")
    v.set_defaults(fn=_validate)
    i = sub.add_parser("info", help="summary of a preference directory")
    i.add_argument("dir")
    i.set_defaults(fn=_info)
    h = sub.add_parser("add-human", help="import human labels from a CSV")
    h.add_argument("dir")
    h.add_argument("--csv", required=True, help="columns shard,first,second,label")
    h.set_defaults(fn=_add_human)
    args = p.parse_args(argv)
    return _run(p.prog, args)


def _run(prog: str, args: argparse.Namespace) -> int:
    """``args.fn(args)``; a bad store or shard is one message on stderr and exit code 2."""
    from cqtml_env.preferences.store import PrefsFormatError
    from cqtml_env.safetensors_io import SafetensorsFileError

    try:
        return int(args.fn(args))
    except (PrefsFormatError, SafetensorsFileError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
