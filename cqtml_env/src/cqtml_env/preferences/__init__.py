"""Preferences: candidate shows per clip, simulated labellers, pair sampling, and the on-disk
store (manifest + safetensors shards). ``cqtml_env.prefs`` was this package as one module."""

from cqtml_env.preferences.candidates import CandidateFactory, candidates_from_actions
from cqtml_env.preferences.generate import PolicyHook, generate_preferences
from cqtml_env.preferences.labellers import LABELLERS, LabellerSpec, label_pairs
from cqtml_env.preferences.sampling import sample_pairs
from cqtml_env.preferences.store import (
    ACTION_SCALE,
    FORMAT,
    VERSION,
    PreferenceArrays,
    PreferenceDataset,
    PrefsFormatError,
    rows_for_clips,
    split_clips,
)

__all__ = [
    "ACTION_SCALE",
    "FORMAT",
    "LABELLERS",
    "VERSION",
    "CandidateFactory",
    "LabellerSpec",
    "PolicyHook",
    "PreferenceArrays",
    "PreferenceDataset",
    "PrefsFormatError",
    "candidates_from_actions",
    "generate_preferences",
    "label_pairs",
    "rows_for_clips",
    "sample_pairs",
    "split_clips",
]
