"""Rig files: defaults, parsing, DMX mapping (gamma, 16-bit, RGB/RGBW) and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from cqtml_env.show.rig import RigError, default_rig, load_rig, parse_rig

GOOD = """\
refresh_hz = 40
latency_ms = 25

[limiter]
threshold = 0.15

[sacn]
destination = "127.0.0.1"
priority = 150

[[devices]]
name = "bass"
colour = "#ff8000"
layout = "rgb"
fine = true
universe = 2
channel = 10
gamma = 2.0

[[devices]]
name = "wash"
colour = [255, 255, 128]
layout = "rgbw"
channel = 1
universe = 2
min = 0.1
max = 0.9
osc_address = "/wash/level"
midi_channel = 3
midi_cc = 7
"""


def test_default_rig_is_four_dimmers_on_universe_1():
    rig = load_rig(None)
    assert rig.num_devices == 4 and rig.universes() == [1]
    assert [d.channel for d in rig.devices] == [1, 2, 3, 4]
    assert all(d.layout == "dimmer" and not d.fine for d in rig.devices)
    frames = rig.dmx_frames(np.array([[0.0], [1.0], [0.5], [0.25]]))
    assert list(frames[1][0, :5]) == [0, 255, 128, 64, 0]
    assert default_rig(3).num_devices == 3


def test_parse_good_rig_and_mapping(tmp_path):
    path = tmp_path / "rig.toml"
    path.write_text(GOOD)
    rig = load_rig(path)
    bass, wash = rig.devices
    assert rig.refresh_hz == 40 and rig.latency_ms == 25 and rig.limiter.threshold == 0.15
    assert rig.sacn == {"destination": "127.0.0.1", "priority": 150}
    assert bass.colour == (255, 128, 0) and bass.num_channels == 6
    assert bass.channel_names() == ["Red", "Red fine", "Green", "Green fine", "Blue",
                                    "Blue fine"]
    assert wash.num_channels == 4 and wash.osc_address == "/wash/level"
    inten = rig.intensities(np.array([[0.5, 1.0], [0.0, 1.0]]))
    np.testing.assert_allclose(inten[0], [0.25, 1.0])  # gamma 2
    np.testing.assert_allclose(inten[1], [0.1, 0.9])  # min/max
    dmx = rig.dmx_frames(inten)[2].astype(int)
    v16 = round(0.25 * 65535)  # red at full colour weight, 16-bit
    assert dmx[0, 9] == v16 >> 8 and dmx[0, 10] == v16 & 0xFF
    g16 = round(0.25 * 128 / 255 * 65535)
    assert dmx[0, 11] * 256 + dmx[0, 12] == g16
    assert dmx[0, 13] == 0 and dmx[0, 14] == 0  # no blue in orange
    # rgbw: white takes the common part (128), rgb keep the rest
    np.testing.assert_array_equal(dmx[1, 0:4], np.round(0.9 * np.array([127, 127, 0, 128])))


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[[devices]]\nname = 'a'\nchannel = 600\n", ["line 3", "devices[0].channel", "600"]),
        ("[[devices]]\nname = 'a'\n[[devices]]\nname = 'b'\nlayout = 'rgbx'\n",
         ["line 5", "devices[1].layout", "rgbx"]),
        ("[[devices]]\nname = 'a'\ncolor = 'red'\n", ["line 3", "devices[0].color"]),
        ("[[devices]]\nname = 'a'\nchanel = 2\n", ["line 3", "unknown key", "chanel"]),
        ("[[devices]]\nname = 'a'\nchannel = 1\nlayout = 'rgb'\n[[devices]]\nname = 'b'\n"
         "channel = 3\n", ["line 7", "overlap", "'a'"]),
        ("refresh_hz = 60\n[sacn]\n[[devices]]\nname = 'a'\n", ["line 1", "44"]),
        ("[limiter]\nenabled = false\n[[devices]]\nname='a'\n",
         ["line 2", "--unsafe-no-limiter"]),
        ("[limiter]\nmax_flashes = 5\n[[devices]]\nname='a'\n", ["line 2", "max_flashes"]),
        ("[limiter]\nthreshold = 0.3\nrig_threshold = 0.2\n[[devices]]\nname='a'\n",
         ["line 3", "limiter.rig_threshold", "at least"]),
        ("[[devices]]\nname = 'a'\nchannel = 510\nlayout = 'rgb'\nfine = true\n",
         ["line 3", "past slot 512"]),
        ("refresh_hz = \n", ["not valid TOML", "line 1"]),
        ("x = 1\n", ["unknown key 'x'", "line 1"]),
        ("refresh_hz = 30\n", ["no [[devices]]"]),
        ("[[devices]]\nname = 'a'\n[[devices]]\nname = 'a'\nchannel = 2\n",
         ["used twice", "line 4"]),
        ("[[devices]]\nname = 'a'\nosc_address = 'a'\n", ["line 3", "osc_address"]),
    ],
)
def test_bad_rig_files_name_line_and_field(tmp_path, text, needles):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RigError) as err:
        load_rig(path)
    msg = str(err.value)
    assert str(path) in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_unreadable_rig_file(tmp_path):
    with pytest.raises(RigError, match="cannot read"):
        load_rig(tmp_path / "missing.toml")
    with pytest.raises(RigError):
        parse_rig("[[devices]]\nname = 'a,b'\n")
