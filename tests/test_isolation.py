"""cqtml_env and cqtml_policy never import each other; importing cqtml_env stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("cqtml_policy", "cqtml_env"), ("cqtml_env", "cqtml_policy")],
)
def test_packages_do_not_import_each_other(package, forbidden):
    r = run_python(
        f"import sys, {package}; "
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] == {forbidden!r}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    assert r.returncode == 0, f"importing {package} imported {forbidden}: {r.stdout}{r.stderr}"


def test_data_layer_does_not_import_policy_or_torch():
    code = (
        "import sys; from cqtml_env import SyntheticMusic, AudioFolder, FeatureCache, make_dataset; "
        "SyntheticMusic(2, max_duration=1.0)[0]; "
        "bad = sorted(m for m in ('cqtml_policy', 'torch') if m in sys.modules); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = run_python(code)
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_cqtml_env_is_lazy():
    r = run_python(
        "import sys, cqtml_env; heavy = [m for m in ('librosa', 'torch', 'pandas') "
        "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    assert r.returncode == 0, r.stdout + r.stderr
