"""``cqtml-reward``: train a Bradley–Terry reward model, evaluate it, rebuild the default.

The shipped weights come from one seeded command per gold version::

    cqtml-reward train-default --out cqtml_env/src/cqtml_env/reward/weights --seed 0 \
        --gold-version gold-v5   # the default; gold-v1: CQTML-v0's

(preferences on 320 synthetic clips, 64 candidates and 128 oracle-labelled pairs per clip,
then training, evaluation on fresh synthetic and record-like clips, and the model card).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cqtml_env.reward.default import (
    DEFAULT_CLIPS,
    DEFAULT_EPOCHS,
    DEFAULT_HIDDEN,
    FRESH_DATA_SEED,
)
from cqtml_env.reward.model import DEFAULT_GOLD_VERSION


def _train(args: argparse.Namespace) -> int:
    from cqtml_env.reward.training import TrainConfig, train_reward_model

    ft = args.init is not None
    cfg = TrainConfig(
        epochs=args.epochs if args.epochs is not None else (30 if ft else DEFAULT_EPOCHS),
        lr=args.lr if args.lr is not None else (1e-3 if ft else 3e-3),
        seed=args.seed,
        patience=args.patience if args.patience is not None else 6,
        threads=args.threads,
        hidden=args.hidden,
        val_fraction=args.val_fraction,
        max_minutes=args.max_minutes,
    )
    log_dir = args.log_dir or str(Path(args.out) / "tb")
    if args.init is not None:
        return _finetune(args, cfg, log_dir)
    if len(args.prefs) > 1:
        raise SystemExit("several --prefs are combined only when fine-tuning (--init)")
    _, report = train_reward_model(
        args.prefs[0], args.out, cfg, log_dir=log_dir, progress=not args.quiet
    )
    print(
        json.dumps(
            {
                "best_val": report["best_val"],
                "initial_val": report["initial_val"],
                "train_minutes": report["train_minutes"],
            },
            indent=1,
        )
    )
    return 0


def _finetune(args: argparse.Namespace, cfg, log_dir: str) -> int:
    from dataclasses import replace

    from cqtml_env.reward.finetune import FinetuneRecipe, finetune_reward_model

    given = {"lr": args.lr, "epochs": args.epochs, "patience": args.patience,
             "ensemble": args.ensemble}
    recipe = replace(FinetuneRecipe(), **{k: v for k, v in given.items() if v is not None})
    if args.shared_heads:
        recipe = replace(recipe, device_terms=False)
    _, report = finetune_reward_model(
        args.prefs, args.out, init=args.init, person=args.labeller, mix_gold=args.mix_gold,
        test_fraction=args.test_fraction, recipe=recipe,
        seed=args.seed, progress=not args.quiet, log_dir=log_dir,
    )
    p = report["person"]
    print(json.dumps(p, indent=1))
    print(
        f"held-out agreement with {p['labeller']} on {p['test_decided_pairs']} pairs of "
        f"{p['test_clips']} unseen clips: starting model {p['agreement_init']:.3f}, "
        f"fine-tuned {p['agreement_finetuned']:.3f} (weights in {args.out})"
    )
    return 0


def _fresh_cqts(spec: str, seed: int):
    from cqtml_env.datasets.spec import make_dataset

    kind, _, arg = spec.partition(":")
    if kind == "record-like":
        from cqtml_env.datasets.record_like import record_like_cqts

        return record_like_cqts(int(arg or 16), seed)
    ds = make_dataset(spec, **({"seed": seed} if kind == "synthetic" else {}))
    return ds.get_many(range(len(ds)))


def _eval(args: argparse.Namespace) -> int:
    from cqtml_env.reward.evaluation import evaluate_fresh
    from cqtml_env.reward.model import RewardModel

    model = (
        RewardModel.load_default()
        if args.model == "default"
        else (RewardModel.from_pretrained(args.model))
    )
    cqts = _fresh_cqts(args.data, args.data_seed)
    res = evaluate_fresh(model, cqts, candidates=args.candidates, seed=args.seed)
    print(json.dumps(res, indent=1))
    return 0


def _train_default(args: argparse.Namespace) -> int:
    from cqtml_env.reward.default import train_default

    model = train_default(
        out=args.out,
        work=args.work,
        seed=args.seed,
        clips=args.clips,
        epochs=args.epochs,
        hidden=args.hidden,
        threads=args.threads,
        progress=not args.quiet,
        gold_version=args.gold_version,
    )
    print(json.dumps(model.config.metrics, indent=1, default=float))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="cqtml-reward",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train on a cqtml-prefs directory")
    t.add_argument("--prefs", required=True, action="append",
                   help="cqtml-prefs directory (repeat to combine stores when fine-tuning)")
    t.add_argument("--out", required=True)
    t.add_argument("--init", default=None,
                   help="fine-tune: 'default' (the shipped model a taste starts from, "
                        "gold-v1's) or a model directory; "
                        "trains on human labels, held out by clip")
    t.add_argument("--labeller", default=None, help="fine-tune on this person's labels only")
    t.add_argument("--mix-gold", type=float, default=0.0,
                   help="fine-tune: share of gold-labelled pairs mixed into the fit set")
    t.add_argument("--test-fraction", type=float, default=0.2,
                   help="fine-tune: share of the person's clips held out for the report")
    t.add_argument("--epochs", type=int, default=None,
                   help=f"default {DEFAULT_EPOCHS} (30 when fine-tuning)")
    t.add_argument("--lr", type=float, default=None, help="default 3e-3 (1e-2 when fine-tuning)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--patience", type=int, default=None,
                   help="early-stopping patience (default 6; 20 when fine-tuning)")
    t.add_argument("--ensemble", type=int, default=None,
                   help="fine-tuning: members averaged into one model (default 4)")
    t.add_argument("--shared-heads", action="store_true",
                   help="fine-tuning: no per-device terms (every device judged by one head)")
    t.add_argument("--hidden", type=int, default=DEFAULT_HIDDEN)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--val-fraction", type=float, default=0.15)
    t.add_argument("--max-minutes", type=float, default=None)
    t.add_argument("--log-dir", default=None, help="TensorBoard dir (default OUT/tb)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(fn=_train)
    d = sub.add_parser("train-default", help="the seeded recipe behind the shipped weights")
    d.add_argument("--out", required=True,
                   help="where GOLD_VERSION.safetensors/.json and MODEL_CARD-GOLD_VERSION.md go")
    d.add_argument("--work", default="runs/reward-default", help="prefs, checkpoints, logs")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--clips", type=int, default=DEFAULT_CLIPS)
    d.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    d.add_argument("--hidden", type=int, default=DEFAULT_HIDDEN)
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--gold-version", default=DEFAULT_GOLD_VERSION,
                   help="gold scorer the oracle labels and the features follow (docs/GOLD.md; "
                        "shipped: gold-v5, the default, and gold-v1)")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(fn=_train_default)
    e = sub.add_parser("eval", help="agreement with gold on fresh candidates")
    e.add_argument("--model", default="default", help="'default' or a weights path")
    e.add_argument(
        "--data",
        default="synthetic:32",
        help="data set spec, or record-like:N for the record-like fixtures",
    )
    e.add_argument("--data-seed", type=int, default=FRESH_DATA_SEED)
    e.add_argument("--candidates", type=int, default=64)
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(fn=_eval)
    args = p.parse_args(argv)
    from cqtml_env.cli.prefs import _run

    return _run(p.prog, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
