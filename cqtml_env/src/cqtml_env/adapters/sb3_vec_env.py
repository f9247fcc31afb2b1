"""Stable-Baselines3 adapter: use the native :class:`CQTMLVectorEnv` as an SB3 ``VecEnv``.

SB3 does not accept a ``gymnasium.vector.VectorEnv``; without this adapter it would wrap N
single envs in ``DummyVecEnv``/``SubprocVecEnv`` and lose the batched reward-model pass. SB3
wants same-step autoreset, ``infos`` as a list of dicts and the scored episode's last
observation in ``infos[i]["terminal_observation"]``, which is what the native env's SAME_STEP
``final_obs`` / ``final_info`` already carry, so this is a thin reshaping layer.

Requires the optional extra: ``pip install "cqtml-env[sb3]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

try:
    from stable_baselines3.common.vec_env import VecEnv
    from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "cqtml_env.adapters.sb3_vec_env needs stable-baselines3: pip install 'cqtml-env[sb3]'"
    ) from exc


def _unbatch_info(info: dict[str, Any], i: int) -> dict[str, Any]:
    """Sub-env ``i``'s entries of a gymnasium vector info dict (``_key`` masks respected)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info.get(f"_{key}")
        if mask is not None and not mask[i]:
            continue
        if isinstance(value, dict):
            out[key] = _unbatch_info(value, i)
        else:
            v = value[i]
            out[key] = v.item() if isinstance(v, np.generic) else v
    return out


class CQTMLSB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` over a gymnasium ``VectorEnv`` with SAME_STEP autoreset (CQTML's native
    vector env, or anything like it).

    ``infos[i]`` is the scored episode's info (gold score and components, proxy score, clip
    id) plus ``terminal_observation``; ``reset_infos[i]`` is the new episode's. Per-env reset
    options set with ``set_options`` must be equal for all envs, or each a ``{"clip": c}``
    (turned into the vector env's ``{"clips": [...]}``).
    """

    def __init__(self, venv: VectorEnv) -> None:
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"the vector env must use AutoresetMode.SAME_STEP (SB3's semantics), got {mode!r}"
            )
        self.venv = venv
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    @classmethod
    def make(cls, num_envs: int = 8, **env_kwargs: Any) -> CQTMLSB3VecEnv:
        """Build the native ``CQTMLVectorEnv(num_envs, **env_kwargs)`` and wrap it."""
        from cqtml_env.env.vector import CQTMLVectorEnv

        return cls(CQTMLVectorEnv(num_envs=num_envs, **env_kwargs))

    # -- core API ------------------------------------------------------------------------
    def _reset_arguments(self) -> tuple[Any, dict[str, Any] | None]:
        seeds: Any = None if all(s is None for s in self._seeds) else list(self._seeds)
        opts = self._options
        if all(o == opts[0] for o in opts):
            options = dict(opts[0]) or None
        elif all(set(o) == {"clip"} for o in opts):
            options = {"clips": [o["clip"] for o in opts]}
        else:
            raise ValueError(
                "per-env reset options must be equal for all envs, or each exactly {'clip': c}"
            )
        return seeds, options

    def reset(self) -> np.ndarray:
        seed, options = self._reset_arguments()
        obs, info = self.venv.reset(seed=seed, options=options)
        self.reset_infos = [_unbatch_info(info, i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_async() must be called before step_wait()")
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        self._actions = None
        dones = np.logical_or(terminated, truncated)
        final_info = info.get("final_info", {})
        final_obs = info.get("final_obs")
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            if dones[i]:
                d = _unbatch_info(final_info, i)
                d["terminal_observation"] = final_obs[i] if final_obs is not None else None
                self.reset_infos[i] = _unbatch_info(
                    {k: v for k, v in info.items() if k not in ("final_info", "_final_info", "final_obs", "_final_obs")},
                    i,
                )
            else:  # pragma: no cover - CQTML episodes always end after one step
                d = _unbatch_info(info, i)
            d["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            infos.append(d)
        return obs, np.asarray(rewards, dtype=np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.venv.render()
        return list(frames) if frames is not None else [None] * self.num_envs

    # -- attribute access: the sub-envs are one object, so every index sees the same value --
    def _indices(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Sets the attribute on the (single, shared) vector env, whatever the indices."""
        setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Calls the vector env's method once; every requested index gets that result."""
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]


__all__ = ["CQTMLSB3VecEnv"]
