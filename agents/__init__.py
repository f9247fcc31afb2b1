"""CQTML agents: GRPO (``agents/grpo.py``), SB3 training (``agents/train_sb3.py``), evaluation
(``agents/evaluate.py``) and the commands that need both ``cqtml_env`` and ``cqtml_policy``.

Each algorithm is one readable script (CleanRL style), run as ``python agents/grpo.py ...`` or
``python -m agents.grpo ...``; what they share lives in small modules of this package
(``agents.common``, ``agents.checkpoint``, ...), installed by the workspace ``pyproject.toml``
(``pip install -e .``), so scripts, tests and benches import it as ``agents.<module>`` with no
``sys.path`` edits.
"""
