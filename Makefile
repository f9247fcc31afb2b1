# Two commands do everything on a fresh machine with Python 3.11 and pip:
#   make train   - create/refresh .venv, install both packages, train GRPO on synthetic music
#   make test    - create/refresh .venv, install both packages + dev tools, run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cqtml-installed
# The CPU machines we run on cap pip at these releases (they lie on local disk there).
TORCH  ?= torch==2.14.1 torchvision==0.29.1
RUN_DIR ?= runs/grpo-default

.PHONY: venv train test lint bench wheels clean

venv: $(STAMP)

$(STAMP): pyproject.toml cqtml_env/pyproject.toml cqtml_policy/pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e "./cqtml_env[show,label]" -e "./cqtml_policy[sb3,int8]" -e ".[dev]"
	touch $(STAMP)

train: venv
	$(PY) -m cqtml_env.warmup
	$(PY) agents/grpo.py --run-dir $(RUN_DIR) --cache-dir runs/.feature-cache

test: venv
	$(PY) -m ruff check .
	@# the labelling page's browser test drives Debian's chromium (skipped when absent)
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && { apt-get update -qq; apt-get install -y -qq chromium; }; } || true
	$(PY) -m cqtml_env.warmup  # compile numba kernels once before parallel workers
	$(PY) -m pytest -n 2 --durations=15

lint: venv
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

bench: venv
	$(PY) -m cqtml_env.warmup
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

wheels: venv
	$(PY) -m build --wheel --outdir dist ./cqtml_env
	$(PY) -m build --wheel --outdir dist ./cqtml_policy

clean:
	rm -rf $(VENV) dist build runs .pytest_cache
