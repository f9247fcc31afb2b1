"""The simulated labeller of ``bench/bench_taste.py``: its taste is the one the bench claims."""

from __future__ import annotations

import numpy as np
from conftest import load_bench

from cqtml_env import GoldScorer, SyntheticMusic

bench_taste = load_bench("bench_taste")


def test_taste_wants_the_bass_lamp_on_kicks_and_the_treble_lamp_steady():
    t = 200
    strip = np.zeros((60, t), np.uint8)
    kicks = np.arange(5, t, 20)
    for k in kicks:  # a kick: low bins loud for 3 frames
        strip[:10, k:k + 3] = 255
    bass = np.zeros(t, np.float32)
    for k in kicks:
        bass[k:k + 3] = 1.0
    steady, flicker = np.full(t, 0.4, np.float32), (np.arange(t) % 2).astype(np.float32)
    mid = np.full(t, 0.3, np.float32)
    good = np.stack([bass, mid, mid, steady])
    late_bass = np.stack([np.roll(bass, 10), mid, mid, steady])
    flickery = np.stack([bass, mid, mid, flicker])
    taste = bench_taste.taste
    assert taste(good, strip) > taste(late_bass, strip) + 0.5
    assert taste(good, strip) > taste(flickery, strip) + 1.0
    # the page's strip: mono mean, clipped, uint8, low notes first
    cqt = np.random.default_rng(0).uniform(0, 1.2, (2, 8, 5)).astype(np.float32)
    s = bench_taste.strip_of(cqt)
    assert s.dtype == np.uint8 and s.shape == (8, 5)
    assert np.array_equal(s, np.round(np.clip(cqt.mean(0), 0, 1) * 255).astype(np.uint8))


def test_taste_differs_from_gold_on_real_candidates():
    # on one synthetic clip's candidates the taste does not just re-rank like the gold scorer
    from cqtml_env.contract import Contract
    from cqtml_env.preferences.candidates import CandidateFactory

    ds = SyntheticMusic(num_clips=1, seed=3)
    cqt = np.asarray(ds.get_cqt(0), np.float32)
    scorer = GoldScorer(num_devices=4)
    levels = Contract.from_processor(ds.processor, num_devices=4).levels
    acts, _ = CandidateFactory(cqt, scorer, 4).sample(16, np.random.default_rng(0), levels=levels)
    strip = bench_taste.strip_of(cqt)
    t = np.array([bench_taste.taste(a, strip) for a in acts])
    g = np.array([float(scorer.score(cqt, a)) for a in acts])
    i, j = np.triu_indices(len(acts), 1)
    agree = np.mean(np.sign(t[i] - t[j]) == np.sign(g[i] - g[j]))
    assert agree < 0.85  # 0.76 here: both dislike noise, but they rank the rest differently
