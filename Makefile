# Two commands do everything on a fresh machine with Python 3.11 and pip:
#   make train   - create/refresh .venv, install both packages, fetch free real music (Debian
#                  soundtrack packages: `apt-get download`, no install), train the default
#                  policy on its tune half and report it on the check half it never saw
#                  (README "Results: per-band auto-gain inputs, cnn-gain")
#   make train DATA=synthetic - the same recipe on built-in synthetic music (no apt needed)
#   make train-grpo - the GRPO policy `make train` trained before (reward model, synthetic)
#   make test    - create/refresh .venv, install both packages + dev tools, run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cqtml-installed
# The CPU machines we run on cap pip at these releases (they lie on local disk there).
TORCH  ?= torch==2.14.1 torchvision==0.29.1
RUN_DIR ?= runs/sft-default
# real = the Debian soundtracks (bench/real_music_check.py: its SOURCES say which half is
# tune and which is check); anything else is a data spec such as `synthetic`
DATA   ?= real
MUSIC  ?= runs/.music
CACHE  := --cache-dir runs/.feature-cache
# supervised imitation of the gold-v7 target (gold-v5 with each band's dark end at its 0.5th
# percentile), its smallest swings flattened until it is flash-safe (agents/sft.py; each flag
# is an Args field; the student's gain features take the teacher's floor)
GOLD   := gold-v7
SFT    := --policy cnn-gain --teacher gold-target --gold-version $(GOLD) --level-sigma 1.5 \
          --learning-rate 3e-3 --steps 2400 --rise-weight 3 --teacher-max-flashes 3

.PHONY: venv train train-grpo test lint bench wheels clean

venv: $(STAMP)

$(STAMP): pyproject.toml cqtml_env/pyproject.toml cqtml_policy/pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e "./cqtml_env[show,label]" -e "./cqtml_policy[sb3,int8,beat]" -e ".[dev]"
	touch $(STAMP)

train: venv
	$(PY) -m cqtml_env.warmup
ifeq ($(DATA),real)
	$(PY) bench/real_music_check.py --prepare $(MUSIC)/tune --split tune --work $(MUSIC)-pkgs
	$(PY) bench/real_music_check.py --prepare $(MUSIC)/check --split check --work $(MUSIC)-pkgs
	$(PY) agents/sft.py $(SFT) --augment-copies 3 --pitch-shift-bins 2 \
	    --data folder:$(MUSIC)/tune --run-dir $(RUN_DIR) $(CACHE)
	$(PY) agents/evaluate.py --policy $(RUN_DIR)/checkpoints/final --data folder:$(MUSIC)/check \
	    --clips 60 --gold-version $(GOLD) $(CACHE) --out $(RUN_DIR)/eval
else
	$(PY) agents/sft.py $(SFT) --train-clips 1024 --data $(DATA) --run-dir $(RUN_DIR) $(CACHE)
	$(PY) agents/evaluate.py --policy $(RUN_DIR)/checkpoints/final --gold-version $(GOLD) \
	    $(CACHE) --out $(RUN_DIR)/eval
endif

train-grpo: venv
	$(PY) -m cqtml_env.warmup
	$(PY) agents/grpo.py --run-dir runs/grpo-default $(CACHE)

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
