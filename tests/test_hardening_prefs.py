"""Issue 14 item 4: ~55 corrupt preference stores, each rejected with one clear message.

Every store is built from a small valid one written with the real store API
(``generate_preferences`` + ``add_labels``), then broken one way. For each:
``PreferenceDataset`` raises :class:`PrefsFormatError` (at open or load), ``cqtml-prefs
validate`` and ``cqtml-reward train`` exit 2 naming file, row/entry and field, no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from cqtml_env.cli.prefs import main as prefs_main
from cqtml_env.cli.reward import main as reward_main
from cqtml_env.preferences import PreferenceDataset, PrefsFormatError, generate_preferences

REPO = Path(__file__).resolve().parents[1]
S0, S1, H = "shard-00000.safetensors", "shard-00001.safetensors", "human-00002.safetensors"


class _Clips:
    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.cqts = [rng.uniform(0, 0.9, (2, 84, 216)).astype(np.float32) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.cqts)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.cqts[i]

    def clip_info(self, i: int) -> dict:
        return {"clip_id": f"c{i}"}


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good") / "store"
    ds = generate_preferences(_Clips(3), root, candidates_per_clip=4, pairs_per_clip=3,
                              clips_per_shard=2, seed=0, progress=False)
    # shard 0: clips 0, 1 (candidates 0-3 and 4-7); a label shard over it
    assert ds.add_labels(S0, np.array([[0, 1], [4, 5]]), np.array([1.0, 0.5])) == H
    assert PreferenceDataset(root).validate() == []
    return root


# -- corruptions ---------------------------------------------------------------------------
def _manifest(fn):
    def mutate(root: Path) -> None:
        path = root / "manifest.json"
        m = json.loads(path.read_text())
        m = fn(m) or m
        path.write_text(json.dumps(m))
    return mutate


def _shard(name: str, fn):
    def mutate(root: Path) -> None:
        arrs = load_file(str(root / name))
        arrs = fn(arrs) or arrs
        save_file(arrs, str(root / name))
    return mutate


def _raw(name: str, fn):
    def mutate(root: Path) -> None:
        path = root / name
        path.write_bytes(fn(path.read_bytes()))
    return mutate


def _set(d: dict, **kw) -> dict:
    d.update(kw)
    return d


def _sh(i: int, **kw):
    return lambda m: _set(m["shards"][i], **kw) and None


def _del(i: int, key: str):
    return lambda m: m["shards"][i].pop(key) and None


def _outside(root: Path) -> Path:
    out = root.parent / "outside.safetensors"
    shutil.copy(root / S1, out)
    return out


def _dotdot(root: Path) -> None:
    _outside(root)
    _manifest(_sh(1, file="../outside.safetensors"))(root)


def _absolute(root: Path) -> None:
    _manifest(_sh(1, file=str(_outside(root))))(root)


def _symlink(root: Path) -> None:
    os.symlink(_outside(root), root / "link.safetensors")
    _manifest(_sh(1, file="link.safetensors"))(root)


def _rows(key, rows, value):
    def fn(a):
        a[key][rows] = value
    return fn


def _nan_gold(a):
    a["gold"][1] = np.nan  # candidate 1 of clip 0: pairs using it must not "mix two clips"
    a["gold"][5] = np.inf


CASES = {
    # manifest.json as a whole
    "manifest_list": (_raw("manifest.json", lambda b: b"[1, 2]"), ["manifest.json", "array"]),
    "manifest_not_json": (_raw("manifest.json", lambda b: b"{oops"), ["manifest.json", "JSON"]),
    "manifest_not_utf8": (_raw("manifest.json", lambda b: b"\xff\xfe" + b),
                          ["manifest.json", "UTF-8"]),
    "manifest_empty": (_raw("manifest.json", lambda b: b""), ["manifest.json", "JSON"]),
    "manifest_missing": (lambda r: (r / "manifest.json").unlink(), ["manifest.json"]),
    "format_wrong": (_manifest(lambda m: _set(m, format="other")), ["manifest.json", "format"]),
    "version_missing": (_manifest(lambda m: m.pop("version") and None),
                        ["manifest.json", "version"]),
    "no_shards": (_manifest(lambda m: m.pop("shards") and None), ["manifest.json", "shards"]),
    "shards_object": (_manifest(lambda m: _set(m, shards={})), ["manifest.json", "shards"]),
    "shard_entry_string": (_manifest(lambda m: _set(m, shards=["x", *m["shards"][1:]])),
                           ["shards[0]", "string"]),
    "num_devices_str": (_manifest(lambda m: _set(m, num_devices="4")), ["num_devices"]),
    "num_devices_zero": (_manifest(lambda m: _set(m, num_devices=0)), ["num_devices"]),
    "sources_missing": (_manifest(lambda m: m.pop("sources") and None), ["sources"]),
    "labellers_string": (_manifest(lambda m: _set(m, labellers="oracle")), ["labellers"]),
    # shard entries: types, missing keys
    "file_missing_key": (_manifest(_del(0, "file")), ["shards[0].file"]),
    "file_int": (_manifest(_sh(0, file=3)), ["shards[0].file"]),
    "pairs_str": (_manifest(_sh(0, pairs="6")), ["shards[0].pairs"]),
    "pairs_missing_key": (_manifest(_del(0, "pairs")), ["shards[0].pairs", "missing"]),
    "pairs_negative": (_manifest(_sh(1, pairs=-1)), ["shards[1].pairs"]),
    "pairs_bool": (_manifest(_sh(1, pairs=True)), ["shards[1].pairs"]),
    "clips_float": (_manifest(_sh(0, clips=2.0)), ["shards[0].clips"]),
    "candidates_missing_key": (_manifest(_del(0, "candidates")), ["shards[0].candidates"]),
    "clip_ids_string": (_manifest(_sh(0, clip_ids="c0,c1")), ["shards[0].clip_ids"]),
    "clip_ids_short": (_manifest(_sh(0, clip_ids=["c0"])), ["shards[0].clip_ids"]),
    "ref_unknown": (_manifest(_sh(2, ref="nope.safetensors")), ["shards[2].ref"]),
    "meta_int": (_manifest(_sh(2, meta=5)), ["shards[2].meta"]),
    "meta_outside": (_manifest(_sh(2, meta="../meta.json")), ["shards[2].meta", "plain file"]),
    "duplicate_shard_names": (_manifest(_sh(1, file=S0)), ["shards[1].file", "twice"]),
    # shard paths must stay inside the store
    "path_dotdot": (_dotdot, ["shards[1].file", "plain file name"]),
    "path_absolute": (_absolute, ["shards[1].file", "plain file name"]),
    "path_symlink_out": (_symlink, ["shards[1].file", "outside the store"]),
    # a manifest lying about what the shards hold
    "lying_pairs": (_manifest(_sh(0, pairs=60)), ["shards[0].pairs is 60", S0, "holds 6"]),
    "lying_candidates": (_manifest(_sh(1, candidates=5)), ["shards[1].candidates", S1]),
    "lying_clips": (_manifest(lambda m: _set(m["shards"][1], clips=2, clip_ids=["a", "b"])
                              and None), ["shards[1].clips", S1]),
    "lying_label_pairs": (_manifest(_sh(2, pairs=1)), ["shards[2].pairs", H]),
    # shard files
    "shard_missing": (lambda r: (r / S1).unlink(), [S1, "missing"]),
    "shard_truncated": (_raw(S1, lambda b: b[: len(b) // 2]), [S1, "safetensors"]),
    "shard_garbage": (_raw(S1, lambda b: os.urandom(64)), [S1, "safetensors"]),
    "shard_empty": (_raw(S1, lambda b: b""), [S1, "safetensors"]),
    "label_shard_truncated": (_raw(H, lambda b: b[:40]), [H, "safetensors"]),
    # shard columns
    "label_shorter": (_shard(S0, lambda a: _set(a, label=a["label"][:-2])), [S0, "label"]),
    "pairs_3_columns": (_shard(S0, lambda a: _set(a, pairs=np.zeros((6, 3), np.int32))),
                        [S0, "pairs [6, 3]"]),
    "labeller_array_missing": (_shard(S0, lambda a: {k: v for k, v in a.items() if k != "labeller"}),
                               [S0, "'labeller'"]),
    "gold_float64": (_shard(S0, lambda a: _set(a, gold=a["gold"].astype(np.float64))),
                     [S0, "gold is float64"]),
    "actions_wrong_devices": (_shard(S0, lambda a: _set(a, actions=a["actions"][:, :3])),
                              [S0, "actions"]),
    "cand_clip_short": (_shard(S0, lambda a: _set(a, cand_clip=a["cand_clip"][:-1])),
                        [S0, "cand_clip"]),
    "cqt_nan": (_shard(S1, _rows("cqt", (0, 0, 0, 0), np.nan)), [S1, "cqt"]),
    "cqt_out_of_range": (_shard(S1, _rows("cqt", (0, 0, 0, 0), 2.0)), [S1, "cqt"]),
    # rows
    "gold_nan_inf": (_shard(S0, _nan_gold), [f"{S0} candidate row 1", "gold nan",
                                             f"{S0} candidate row 5", "gold inf"]),
    "gold_negative": (_shard(S1, _rows("gold", 2, -0.5)), [f"{S1} candidate row 2", "gold"]),
    "cand_clip_out_of_range": (_shard(S0, _rows("cand_clip", 3, 7)),
                               [f"{S0} candidate row 3", "cand_clip 7"]),
    "source_out_of_range": (_shard(S0, _rows("source", 0, 99)),
                            [f"{S0} candidate row 0", "source 99"]),
    "pair_negative": (_shard(S0, _rows("pairs", 0, [-1, 2])), [f"{S0} row 0", "out of range"]),
    "pair_too_big": (_shard(S1, _rows("pairs", 1, [0, 99])), [f"{S1} row 1", "out of range"]),
    "pair_mixes_clips": (_shard(S0, _rows("pairs", 2, [0, 4])), [f"{S0} row 2", "two clips"]),
    "pair_with_itself": (_shard(S0, _rows("pairs", 2, [3, 3])), [f"{S0} row 2", "itself"]),
    "label_soft": (_shard(S0, _rows("label", 2, 0.7)), [f"{S0} row 2", "label 0.7"]),
    "label_nan": (_shard(S1, _rows("label", 0, np.nan)), [f"{S1} row 0", "label nan"]),
    "label_negative": (_shard(S0, _rows("label", 1, -1.0)), [f"{S0} row 1", "label -1"]),
    "labeller_unknown": (_shard(S0, _rows("labeller", 4, 9)), [f"{S0} row 4", "labeller id 9"]),
    "label_shard_out_of_range": (_shard(H, _rows("pairs", 1, [4, 50])),
                                 [f"{H} row 1", "out of range"]),
    "label_shard_label_2": (_shard(H, _rows("label", 0, 2.0)), [f"{H} row 0", "label 2"]),
}


def _broken(good_store: Path, tmp_path: Path, case: str) -> Path:
    root = tmp_path / "store"
    shutil.copytree(good_store, root)
    CASES[case][0](root)
    return root


@pytest.mark.parametrize("case", sorted(CASES))
def test_corrupt_store_is_one_clear_error(good_store, tmp_path, capsys, case):
    root = _broken(good_store, tmp_path, case)
    expected = CASES[case][1]
    # the Python loader: PrefsFormatError at open or at (strict) load, naming the problem
    with pytest.raises(PrefsFormatError) as info:
        PreferenceDataset(root).load()
    for s in expected:
        assert s in str(info.value), (s, str(info.value))
    # cqtml-prefs validate: exit 2, file/row/field named
    assert prefs_main(["validate", str(root)]) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    for s in expected:
        assert s in text, (s, text)
    assert "Traceback" not in text
    assert "mixes two clips" not in text or case == "pair_mixes_clips"
    # cqtml-reward train: exit 2 before any training, same message
    rc = reward_main(["train", "--prefs", str(root), "--out", str(tmp_path / "rm"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    for s in expected:
        assert s in err, (s, err)
    assert not (tmp_path / "rm" / "model.safetensors").exists()


def test_nan_gold_drops_only_its_pairs(good_store, tmp_path):
    """Bad candidates make their pairs 'uses an invalid candidate', never 'mixes two clips'."""
    root = _broken(good_store, tmp_path, "gold_nan_inf")
    problems = PreferenceDataset(root).validate()
    assert not any("mixes two clips" in p for p in problems), problems
    arrs = load_file(str(root / S0))
    uses_bad = np.isin(arrs["pairs"], [1, 5]).any(axis=1)
    human = np.isin(np.array([[0, 1], [4, 5]]), [1, 5]).any(axis=1)
    invalid = [p for p in problems if "uses an invalid candidate" in p]
    assert len(invalid) == uses_bad.sum() + human.sum()
    with pytest.warns(UserWarning, match="dropped"):
        arr = PreferenceDataset(root, strict=False).load()
    assert len(arr.pairs) == PreferenceDataset(good_store).num_pairs - len(invalid)
    assert np.isfinite(arr.gold[arr.pairs]).all()


def test_info_on_nan_gold_store_averages_only_finite_gold(good_store, tmp_path, capsys):
    root = _broken(good_store, tmp_path, "gold_nan_inf")
    with pytest.warns(UserWarning, match="dropped"):
        assert prefs_main(["info", str(root)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert all(np.isfinite(v) for v in info["mean_gold_by_source"].values()), info


def test_shard_path_never_leaves_the_store(good_store, tmp_path):
    """A '../' shard is refused before it is opened, even if the outside file is valid."""
    root = _broken(good_store, tmp_path, "path_dotdot")
    assert (root.parent / "outside.safetensors").is_file()
    with pytest.raises(PrefsFormatError, match=r"shards\[1\]\.file '\.\./outside"):
        PreferenceDataset(root)


@pytest.mark.parametrize(
    ("case", "module", "args"),
    [
        ("pairs_3_columns", "cqtml_env.cli.prefs", ["validate"]),
        ("manifest_not_utf8", "cqtml_env.cli.reward", ["train", "--quiet", "--prefs"]),
    ],
)
def test_cli_subprocess_exit_2_no_traceback(good_store, tmp_path, case, module, args):
    root = _broken(good_store, tmp_path, case)
    extra = ["--out", str(tmp_path / "rm")] if module.endswith("reward") else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "cqtml_env" / "src"), str(REPO / "cqtml_policy" / "src"), str(REPO),
         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", module, *args, str(root), *extra],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for s in CASES[case][1]:
        assert s in proc.stdout + proc.stderr
