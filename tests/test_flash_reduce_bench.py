"""bench/flash_reduce.py: a show, the same through reduce_flashes and through FlashLimiter, scored
by the independent metrics on a small folder of generated songs."""

from __future__ import annotations

import soundfile as sf
from conftest import beat_song, load_bench

from cqtml_env.contract import SAMPLE_RATE

flash_reduce = load_bench("flash_reduce")


def test_rows_for_each_show_and_the_reduced_ones_are_flash_safe(tmp_path):
    for i, bpm in enumerate((150.0, 200.0)):
        sf.write(str(tmp_path / f"song{i}.wav"), beat_song(10.0, bpm=bpm, seed=i), SAMPLE_RATE)
    rows = flash_reduce.run(f"folder:{tmp_path}", ["gold-v5", "band-follow"], clips=4)
    assert [(r["show"], r["how"]) for r in rows] == [
        (s, h) for s in ("gold-v5", "band-follow")
        for h in ("as it is", "reduce_flashes", "FlashLimiter")]
    assert max(r["flashes"] for r in rows if r["how"] == "as it is") > 3  # something to reduce
    for r in rows:
        assert 0.0 <= r["flash_safe"] <= 1.0 and r["change"] >= 0.0
        if r["how"] == "as it is":
            assert r["change"] == 0.0
        if r["how"] == "reduce_flashes":
            assert r["flashes"] <= 3 and r["flash_safe"] == 1.0
    text = flash_reduce.markdown(rows, "folder:x", "gold-v5")
    assert text.count("\n| gold-v5 |") == 3 and "reduce_flashes" in text
