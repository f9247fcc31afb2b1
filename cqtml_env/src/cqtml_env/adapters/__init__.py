"""Adapters from the env to other frameworks' interfaces (``sb3_vec_env``: a Stable-Baselines3 VecEnv).
Each imports its framework lazily, so ``import cqtml_env`` never needs them."""
