"""``cqtml-label serve``: the labelling page, where people compare two light shows.

    cqtml-label serve --data synthetic:64 --store runs/prefs-human
    cqtml-label serve --data folder:~/music --store prefs --selection uncertain
    cqtml-label serve --data folder:~/music --store prefs --policy runs/grpo/checkpoints/best \\
        --selection random=0.5,policy=0.5

It prints the link to open. Answers are journaled (fsync) before the page moves on and merged
into the store (``labeller="human"``); stop with Ctrl-C (or kill it: nothing is lost, the
next start merges the rest). With ``--host`` other than 127.0.0.1 an access token is made
and must be in the link.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys

from cqtml_env.labelling.app import LOOPBACK


def load_policy_checkpoint(path: str):
    """Load a ``cqtml_policy`` checkpoint (this CLI is the only place that imports it)."""
    try:
        import cqtml_policy
    except ImportError:
        raise SystemExit(
            "--policy needs the cqtml-policy package (pip install cqtml-policy); "
            "cqtml-env itself never imports it"
        ) from None
    return cqtml_policy.load_policy(path, device="cpu")


def build_service(args: argparse.Namespace):
    import torch

    from cqtml_env.datasets.spec import make_dataset
    from cqtml_env.labelling.service import LabellingService, ServiceConfig
    from cqtml_env.reward.model import TASTE_GOLD_VERSION, RewardModel

    torch.set_num_threads(max(1, args.threads))
    dataset = make_dataset(args.data)
    policy = load_policy_checkpoint(args.policy) if args.policy else None
    model = (
        RewardModel.from_pretrained(args.reward_model)
        if args.reward_model
        else RewardModel.load_default(TASTE_GOLD_VERSION)
    )
    cfg = ServiceConfig(
        selection=args.selection,
        candidates_per_clip=args.candidates,
        pairs_per_clip=args.pairs_per_clip,
        seed=args.seed,
        merge_every_s=args.merge_every,
        undo_window_s=args.undo_window,
        refit_every=args.refit_every,
    )
    return LabellingService(
        dataset, args.store, config=cfg, reward_model=model, policy=policy,
        num_devices=args.num_devices,
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cqtml_env.labelling.app import create_app

    token = args.token
    if args.host not in LOOPBACK and not token:
        token = secrets.token_urlsafe(18)
    try:
        service = build_service(args)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"cqtml-label: {exc}", file=sys.stderr)
        return 2
    app = create_app(service, token=token, host=args.host, port=args.port)

    shown = args.host if args.host not in ("0.0.0.0", "::") else socket.gethostname()
    link = f"http://{shown}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"cqtml-label: open {link}", flush=True)
    print(
        f"cqtml-label: data {args.data}, store {args.store}, selection {args.selection}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                limit_concurrency=64, timeout_keep_alive=30)
    res = service.close()  # after a graceful stop (Ctrl-C, SIGTERM): merge everything
    print(f"cqtml-label: merged {res.get('merged', 0)} answers into {args.store}", flush=True)
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cqtml-label", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the labelling page")
    s.add_argument("--data", required=True, help="data set spec: synthetic:N, folder:PATH, ...")
    s.add_argument("--store", required=True, help="cqtml-prefs directory (created if missing)")
    s.add_argument("--policy", default=None, help="cqtml-policy checkpoint directory")
    s.add_argument("--reward-model", default=None,
                   help="reward model directory for 'uncertain' and the agreement shown "
                        "(default: the shipped weights)")
    s.add_argument("--selection", default="random",
                   help="random | uncertain | policy, or a mix like random=0.5,uncertain=0.5")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--token", default=None, help="access token (made for you off loopback)")
    s.add_argument("--candidates", type=int, default=12, help="candidate shows per clip")
    s.add_argument("--pairs-per-clip", type=int, default=3)
    s.add_argument("--num-devices", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--merge-every", type=float, default=10.0, help="seconds between merges")
    s.add_argument("--undo-window", type=float, default=120.0,
                   help="seconds the latest answer stays undoable (and out of the store)")
    s.add_argument("--refit-every", type=int, default=0,
                   help="fine-tune the model behind 'uncertain' every N answers (0 = never)")
    s.add_argument("--threads", type=int, default=1, help="torch threads")
    s.add_argument("--log-level", default="warning")
    s.set_defaults(fn=_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
