"""The labelling session behind the page, without HTTP: pools, labellers, journal, merges.

:class:`LabellingService` hands each labeller pairs they have not seen, records answers in
the journal (on disk before :meth:`answer` returns), lets them undo their latest answer, and
merges final answers into the preference store in the background (and everything on start
and on :meth:`close`). The FastAPI app (:mod:`cqtml_env.labelling.app`) is a thin layer on top.
"""

from __future__ import annotations

import io
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.contract import Contract
from cqtml_env.labelling.journal import (
    CHOICES,
    Journal,
    StoreLock,
    effective_answers,
    encode_levels,
    merge_journals,
    merged_ids,
)
from cqtml_env.labelling.selection import (
    ClipPool,
    PolicyLike,
    make_selector,
    parse_pair_id,
    parse_selection,
    policy_levels,
)
from cqtml_env.preferences.store import ACTION_SCALE

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
BOTH_PLAYED_FRACTION = 0.9  # the clip counts as watched when 90 % of it was played


class LabellingError(Exception):
    """A request the session refuses; ``status`` is the HTTP status the app answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ServiceConfig:
    """Settings of one labelling session."""

    selection: str = "random"
    """pair selection: a strategy name or a mix 'random=0.5,uncertain=0.5'"""
    candidates_per_clip: int = 12
    """candidate shows drawn per clip (the uncertain strategy chooses among their pairs)"""
    pairs_per_clip: int = 3
    """pairs a labeller answers on one clip before the next clip"""
    prefetch: int = 4
    """clips prepared ahead of the furthest labeller, in a background thread"""
    temperatures: tuple[float, ...] = (0.5, 1.0, 1.5)
    """policy sampling temperatures (with a policy)"""
    policy_per_temperature: int = 2
    """policy samples per temperature and clip"""
    undo_window_s: float = 120.0
    """a labeller's latest answer stays undoable (and out of the store) this long"""
    merge_every_s: float = 10.0
    """background merge period"""
    max_pools: int = 256
    """clips kept in memory"""
    seed: int = 0
    """seed of the clip order, the candidates and the A/B sides"""
    refit_every: int = 0
    """every N new answers, fine-tune the reward model behind ``uncertain`` and the agreement
    count on the human labels merged so far, in a background thread (0 = keep the model fixed).
    Without it ``uncertain`` ranks pairs by the shipped model's margins, which know nothing of
    this person (bench/bench_taste.py measures both)"""
    refit_epochs: int = 150
    """most epochs of one refit (early-stopped; otherwise the fine-tune recipe, one member)"""


@dataclass
class _Labeller:
    name: str
    weights: dict[str, float]
    seen: set[str] = field(default_factory=set)
    cursor: int = 0
    pool: int | None = None
    on_pool: int = 0
    current: dict | None = None
    last_answer: dict | None = None
    answers: int = 0
    agree: int = 0
    decided: int = 0
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LabellingService:
    """Pairs for people, answers to the journal, journal to the store (see module docs)."""

    def __init__(
        self,
        dataset: Any,
        store: str | Any,
        *,
        config: ServiceConfig | None = None,
        reward_model: Any = None,
        policy: PolicyLike | None = None,
        scorer: Any = None,
        num_devices: int | None = None,
        background: bool = True,
    ) -> None:
        from cqtml_env.gold.scorer import GoldScorer

        self.cfg = config or ServiceConfig()
        self.dataset = dataset
        if len(dataset) < 1:
            raise ValueError("the data set has no clips")
        if reward_model is None:
            from cqtml_env.reward.model import TASTE_GOLD_VERSION, RewardModel

            reward_model = RewardModel.load_default(TASTE_GOLD_VERSION)
        # candidates and their stored gold follow the reward model's gold version
        self.scorer = scorer or GoldScorer(num_devices=num_devices or 4,
                                           version=getattr(getattr(reward_model, "config", None),
                                                           "gold_version", "gold-v1"))
        self.contract = Contract.from_processor(
            dataset.processor, num_devices=self.scorer.config.num_devices
        )
        self.weights = parse_selection(self.cfg.selection)
        self.policy = policy
        if "policy" in self.weights and policy is None:
            raise ValueError("selection 'policy' needs a policy (cqtml-label serve --policy DIR)")
        self.reward_model = reward_model
        self.root = Path(store)
        self._lock_file = StoreLock(self.root)
        self.journal = Journal(self.root / "journal")
        self._order = np.random.default_rng(self.cfg.seed).permutation(len(dataset))
        self._pools: OrderedDict[int, ClipPool] = OrderedDict()
        self._pool_locks: dict[int, threading.Lock] = {}
        self._pools_guard = threading.Lock()
        self._wav: OrderedDict[int, bytes] = OrderedDict()
        self._labellers: dict[str, _Labeller] = {}
        self._labellers_guard = threading.Lock()
        self._merge_lock = threading.Lock()
        self._closing = False
        self.acknowledged = 0
        self.merge_log: list[dict] = []
        self.bad_journal_lines = 0
        # restart: re-merge whatever the journal holds beyond the store, rebuild who saw what
        self.merge(final=True)
        self._merged = merged_ids(self.root)
        records, self.bad_journal_lines = self.journal.read()
        for r in effective_answers(records):
            lab = self._get_labeller(r["labeller"])
            lab.seen.add(r["pair"])
            lab.cursor = max(lab.cursor, int(r.get("pool", -1)) + 1)
            lab.answers += 1
            self._count_agreement(lab, r.get("choice"), r.get("model_margin"), +1)
        self._refit_base = reward_model
        self._refit_thread: threading.Thread | None = None
        self._refit_lock = threading.Lock()  # not the merge lock: answers never wait on a merge
        self._since_refit = 0
        self.refits: list[dict] = []
        self._wake = threading.Event()
        self._wake_prefetch = threading.Event()
        self._threads: list[threading.Thread] = []
        if background:
            for target in (self._prefetch_loop, self._merge_loop):
                t = threading.Thread(target=target, daemon=True, name=f"label-{target.__name__}")
                t.start()
                self._threads.append(t)

    # -- pools ---------------------------------------------------------------------------
    def _clip_of(self, serial: int) -> int:
        return int(self._order[serial % len(self._order)])

    def pool(self, serial: int) -> ClipPool:
        """Pool ``serial`` (built on first use; deterministic from the seed and serial)."""
        with self._pools_guard:
            p = self._pools.get(serial)
            if p is not None:
                self._pools.move_to_end(serial)
                return p
            lock = self._pool_locks.setdefault(serial, threading.Lock())
        with lock:
            with self._pools_guard:
                if serial in self._pools:
                    return self._pools[serial]
            p = self._build_pool(serial)
            with self._pools_guard:
                self._pools[serial] = p
                while len(self._pools) > self.cfg.max_pools:
                    old, _ = self._pools.popitem(last=False)
                    self._pool_locks.pop(old, None)
            return p

    def _build_pool(self, serial: int) -> ClipPool:
        import torch

        from cqtml_env.preferences.candidates import CandidateFactory

        clip = self._clip_of(serial)
        cqt = np.asarray(self.dataset.get_cqt(clip), np.float32)
        info = self.dataset.clip_info(clip)
        rng = np.random.default_rng([self.cfg.seed, serial])
        factory = CandidateFactory(cqt, self.scorer, self.contract.num_devices)
        acts, names = factory.sample(self.cfg.candidates_per_clip, rng, levels=self.contract.levels)
        levels = np.round(acts * ACTION_SCALE).astype(np.uint8)
        is_policy = np.zeros(len(levels), bool)
        if self.policy is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2**31)))
                plev, pnames = policy_levels(
                    self.policy, cqt, self.cfg.temperatures, self.cfg.policy_per_temperature
                )
            levels = np.concatenate([levels, plev])
            names = names + pnames
            is_policy = np.concatenate([is_policy, np.ones(len(plev), bool)])
        scores = self._score(cqt, levels)
        return ClipPool(serial, clip, str(info.get("clip_id", f"clip-{clip}")), cqt, levels,
                        list(names), scores, is_policy)

    def _score(self, cqt: np.ndarray, levels: np.ndarray) -> np.ndarray:
        return np.asarray(
            self.reward_model.score(cqt, levels.astype(np.float32) / ACTION_SCALE, calibrated=False),
            np.float64,
        )

    def set_reward_model(self, model: Any) -> None:
        """Swap the model behind ``uncertain`` and the agreement count (re-scores pools)."""
        self.reward_model = model
        with self._pools_guard:
            pools = list(self._pools.values())
        for p in pools:
            p.scores = self._score(p.cqt, p.levels)

    def _prefetch_loop(self) -> None:
        while not self._closing:
            with self._labellers_guard:
                ahead = max([lab.cursor for lab in self._labellers.values()] or [0])
            for s in range(ahead, ahead + self.cfg.prefetch):
                if self._closing:
                    return
                with self._pools_guard:
                    have = s in self._pools
                if not have:
                    try:
                        self.pool(s)
                    except Exception:  # a bad clip: the labeller's own request reports it
                        break
            self._wake_prefetch.wait(0.5)
            self._wake_prefetch.clear()

    # -- labellers -----------------------------------------------------------------------
    def _get_labeller(self, name: str) -> _Labeller:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise LabellingError(
                "labeller name must be 1-40 letters, digits, '.', '_' or '-' "
                f"(starting with a letter or digit), got {name!r}"
            )
        with self._labellers_guard:
            lab = self._labellers.get(name)
            if lab is None:
                seed = [self.cfg.seed, *name.encode()]
                lab = self._labellers[name] = _Labeller(
                    name, dict(self.weights), rng=np.random.default_rng(seed)
                )
            return lab

    def _count_agreement(self, lab: _Labeller, choice, margin, sign: int) -> None:
        if choice in ("a", "b") and margin is not None and margin != 0:
            lab.decided += sign
            lab.agree += sign * int((margin > 0) == (choice == "a"))

    def set_selection(self, name: str, selection: str) -> None:
        lab = self._get_labeller(name)
        try:
            weights = parse_selection(selection)
        except ValueError as exc:
            raise LabellingError(str(exc)) from None
        if "policy" in weights and self.policy is None:
            raise LabellingError("selection 'policy' needs the server started with --policy")
        with lab.lock:
            lab.weights = weights

    def next_pair(self, name: str) -> dict:
        """The labeller's current pair (a new one if they have none)."""
        lab = self._get_labeller(name)
        with lab.lock:
            if lab.current is None:
                lab.current = self._new_pair(lab)
            return self._payload(lab)

    def _new_pair(self, lab: _Labeller) -> dict:
        names = list(lab.weights)
        probs = np.array([lab.weights[k] for k in names])
        for _ in range(64):
            if lab.pool is None or lab.on_pool >= self.cfg.pairs_per_clip:
                lab.pool, lab.on_pool = lab.cursor, 0
                lab.cursor += 1
                self._wake_prefetch.set()
            try:
                pool = self.pool(lab.pool)
            except Exception as exc:
                lab.pool = None
                raise LabellingError(f"could not prepare clip: {exc}", 500) from exc
            sel = make_selector(names[int(lab.rng.choice(len(names), p=probs))])
            if not sel.usable(pool):
                sel = make_selector("random")
            pick = sel.choose(pool, lab.seen, lab.rng)
            if pick is None:
                lab.pool = None  # this clip is used up for this labeller
                continue
            i, j = pick
            if lab.rng.random() < 0.5:  # which side is A is random: no position bias
                i, j = j, i
            pid = pool.pair_id(i, j)
            lab.seen.add(pid)
            return {"pair": pid, "pool": pool.serial, "a": i, "b": j,
                    "served": time.time(), "selection": sel.name}
        raise LabellingError("no unseen pairs left for this labeller", 409)

    def _payload(self, lab: _Labeller) -> dict:
        cur = lab.current
        pool = self.pool(cur["pool"])
        mono = pool.cqt.mean(axis=0)  # [F, T], low notes first
        strip = np.round(np.clip(mono, 0, 1) * 255).astype(np.uint8)
        import base64

        return {
            "pair_id": cur["pair"],
            "clip_id": pool.clip_id,
            "audio_url": f"/api/audio/{cur['pair']}.wav",
            "frame_rate": self.contract.frame_rate,
            "num_frames": int(pool.levels.shape[-1]),
            "num_devices": self.contract.num_devices,
            "duration": float(self.dataset.processor.max_duration),
            "a": np.round(pool.activations(cur["a"]), 4).tolist(),
            "b": np.round(pool.activations(cur["b"]), 4).tolist(),
            "cqt": {
                "bins": int(strip.shape[0]),
                "frames": int(strip.shape[1]),
                "data": base64.b64encode(strip.tobytes()).decode("ascii"),
            },
            "selection": cur["selection"],
            "progress": self.progress(lab.name, _locked=lab),
        }

    def progress(self, name: str, _locked: _Labeller | None = None) -> dict:
        lab = _locked or self._get_labeller(name)
        undo = lab.last_answer is not None and lab.last_answer["id"] not in self._merged
        return {
            "labelled": lab.answers,
            "agreement": (lab.agree / lab.decided) if lab.decided else None,
            "agreement_n": lab.decided,
            "can_undo": bool(undo),
        }

    def answer(
        self,
        name: str,
        pair_id: str,
        choice: str,
        *,
        played_fraction: float = 0.0,
        client_seconds: float | None = None,
    ) -> dict:
        """Journal one answer (fsync'd before returning); returns its id and the progress."""
        if choice not in CHOICES:
            raise LabellingError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        try:
            parse_pair_id(pair_id)
        except ValueError as exc:
            raise LabellingError(str(exc)) from None
        if not 0.0 <= float(played_fraction) <= 1.0:
            raise LabellingError(f"played_fraction must be in [0, 1], got {played_fraction}")
        lab = self._get_labeller(name)
        with lab.lock:
            cur = lab.current
            if cur is None or cur["pair"] != pair_id:
                now = cur["pair"] if cur else None
                raise LabellingError(
                    f"pair {pair_id!r} is not {name}'s current pair (current: {now!r}); "
                    "nothing was saved",
                    409,
                )
            pool = self.pool(cur["pool"])
            now = time.time()
            margin = float(pool.scores[cur["a"]] - pool.scores[cur["b"]])
            rec = {
                "kind": "answer",
                "id": uuid.uuid4().hex,
                "labeller": name,
                "pair": pair_id,
                "pool": pool.serial,
                "clip": pool.clip,
                "clip_id": pool.clip_id,
                "a": {"index": cur["a"], "source": pool.sources[cur["a"]],
                      "levels": encode_levels(pool.levels[cur["a"]])},
                "b": {"index": cur["b"], "source": pool.sources[cur["b"]],
                      "levels": encode_levels(pool.levels[cur["b"]])},
                "choice": choice,
                "time": now,
                "seconds": round(now - cur["served"], 3),
                "client_seconds": None if client_seconds is None else float(client_seconds),
                "played_fraction": round(float(played_fraction), 4),
                "both_played": float(played_fraction) >= BOTH_PLAYED_FRACTION,
                "selection": cur["selection"],
                "model_margin": margin,
            }
            self.journal.append(name, rec)  # on disk before we say so
            lab.current = None
            lab.on_pool += 1
            lab.answers += 1
            lab.last_answer = {"id": rec["id"], "pair": pair_id, "pool": pool.serial,
                               "a": cur["a"], "b": cur["b"], "selection": cur["selection"],
                               "choice": choice, "margin": margin}
            self._count_agreement(lab, choice, margin, +1)
            self.acknowledged += 1
        self._maybe_refit()
        return {"saved": rec["id"], "seconds": rec["seconds"]}

    # -- refitting the selection model -------------------------------------------------------
    def _maybe_refit(self) -> None:
        if self.cfg.refit_every <= 0 or self._closing:
            return
        with self._refit_lock:
            self._since_refit += 1
            if self._since_refit < self.cfg.refit_every:
                return
            if self._refit_thread is not None and self._refit_thread.is_alive():
                return  # one refit at a time; the count carries over to the next answer
            self._since_refit = 0
            self._refit_thread = threading.Thread(target=self._refit_safely, daemon=True,
                                                  name="label-refit")
            self._refit_thread.start()

    def _refit_safely(self) -> None:
        try:
            self.refit()
        except Exception as exc:  # keep serving with the old model; say why
            import warnings

            self.refits.append({"time": time.time(), "error": f"{type(exc).__name__}: {exc}"})
            warnings.warn(f"refitting the selection model failed (kept the old one): {exc}",
                          stacklevel=1)

    def refit(self) -> dict:
        """Fine-tune the starting reward model on all human labels merged so far and use it for
        ``uncertain`` and the agreement count from now on. Returns the fine-tune's report."""
        import tempfile

        from cqtml_env.reward.finetune import FinetuneRecipe, finetune_reward_model

        self.merge()
        with tempfile.TemporaryDirectory(prefix="cqtml-refit-") as out:
            model, report = finetune_reward_model(
                [self.root], out, init=self._refit_base, progress=False,
                recipe=FinetuneRecipe(epochs=self.cfg.refit_epochs, ensemble=1),
                seed=self.cfg.seed,
            )
        self.set_reward_model(model)
        self.refits.append({"time": time.time(), "pairs": report["person"]["human_pairs"],
                            "agreement": report["person"]["agreement_finetuned"]})
        return report

    def undo(self, name: str) -> dict:
        """Cancel the labeller's latest answer (not yet merged); it becomes current again."""
        lab = self._get_labeller(name)
        with lab.lock, self._merge_lock:
            last = lab.last_answer
            if last is None:
                raise LabellingError("nothing to undo", 409)
            if last["id"] in self._merged:
                raise LabellingError("that answer is already in the store; it cannot be undone", 409)
            self.journal.append(name, {"kind": "undo", "id": last["id"], "labeller": name,
                                       "time": time.time()})
            lab.answers -= 1
            self._count_agreement(lab, last["choice"], last["margin"], -1)
            lab.on_pool = max(0, lab.on_pool - 1)
            lab.current = {"pair": last["pair"], "pool": last["pool"], "a": last["a"],
                           "b": last["b"], "served": time.time(), "selection": last["selection"]}
            lab.pool = last["pool"]
            lab.last_answer = None
            self.acknowledged -= 1
            return {"undone": last["id"]}

    def audio_wav(self, name: str, pair_id: str) -> bytes:
        """WAV of the labeller's *current* clip (any other request is refused)."""
        lab = self._get_labeller(name)
        with lab.lock:
            cur = lab.current
            if cur is None or cur["pair"] != pair_id:
                raise LabellingError(f"{pair_id!r} is not {name}'s current pair", 404)
            serial = cur["pool"]
        with self._pools_guard:
            wav = self._wav.get(serial)
        if wav is None:
            import soundfile as sf

            pool = self.pool(serial)
            audio = np.asarray(self.dataset.get_audio(pool.clip), np.float32)
            buf = io.BytesIO()
            sf.write(buf, np.clip(audio.T, -1, 1), self.dataset.processor.sample_rate,
                     format="WAV", subtype="PCM_16")
            wav = buf.getvalue()
            with self._pools_guard:
                self._wav[serial] = wav
                while len(self._wav) > 32:
                    self._wav.popitem(last=False)
        return wav

    # -- store ---------------------------------------------------------------------------
    def _ready(self, rec: dict) -> bool:
        if self._closing:
            return True
        lab = self._labellers.get(rec["labeller"])
        latest = lab is not None and lab.last_answer is not None and lab.last_answer["id"] == rec["id"]
        return not latest or time.time() - float(rec["time"]) > self.cfg.undo_window_s

    def _clip_cqt(self, clip: int, clip_id: str) -> np.ndarray:
        info = self.dataset.clip_info(clip)
        if str(info.get("clip_id", f"clip-{clip}")) != clip_id:
            raise ValueError(f"clip {clip} of the data set is {info.get('clip_id')!r}, not {clip_id!r}")
        with self._pools_guard:
            for p in self._pools.values():
                if p.clip == clip:
                    return p.cqt
        return self.dataset.get_cqt(clip)

    def merge(self, final: bool = False) -> dict:
        """Merge ready journal answers into the store now (``final``: all of them)."""
        with self._merge_lock:
            ready = None if final else self._ready
            res = merge_journals(self.root, self.journal, self._clip_cqt, self.scorer, ready=ready)
            if res.merged:
                self._merged = merged_ids(self.root)
                self.merge_log.append({"time": time.time(), "merged": res.merged, "shard": res.shard})
            return {"merged": res.merged, "shard": res.shard, "skipped": res.skipped,
                    "bad_lines": res.bad_lines}

    def _merge_loop(self) -> None:
        while not self._closing:
            self._wake.wait(self.cfg.merge_every_s)
            self._wake.clear()
            if self._closing:
                return
            try:
                self.merge()
            except Exception as exc:  # pragma: no cover - keep serving; the journal has it all
                import warnings

                warnings.warn(f"merge into {self.root} failed: {exc}", stacklevel=1)

    def stats(self) -> dict:
        with self._labellers_guard:
            labs = {n: {"labelled": lab.answers} for n, lab in self._labellers.items()}
        return {"acknowledged": self.acknowledged, "merged": len(self._merged),
                "labellers": labs, "bad_journal_lines": self.bad_journal_lines}

    def close(self) -> dict:
        """Stop the background threads, merge everything, release the store."""
        if self._closing:
            return {"merged": 0}
        self._closing = True
        self._wake.set()
        self._wake_prefetch.set()
        for t in self._threads:
            t.join(timeout=30)
        if self._refit_thread is not None:
            self._refit_thread.join(timeout=120)
        try:
            return self.merge(final=True)
        finally:
            self._lock_file.release()


__all__ = ["BOTH_PLAYED_FRACTION", "LabellingError", "LabellingService", "ServiceConfig"]
