"""Live outputs behind one base class: sACN/E1.31, Art-Net, OSC and MIDI."""

from __future__ import annotations

from cqtml_env.show.outputs.base import REGISTRY, Output, OutputError, register
from cqtml_env.show.outputs.dmx import ArtNetOutput, SACNOutput, artdmx_packet
from cqtml_env.show.outputs.osc import MIDIOutput, OSCOutput
from cqtml_env.show.rig import Rig


def make_outputs(rig: Rig, kinds: list[str] | None = None) -> list[Output]:
    """The outputs the rig configures (its ``[sacn]``, ``[artnet]``, ``[osc]``, ``[midi]``
    tables), or exactly ``kinds``. Not opened yet."""
    if kinds is None:
        kinds = [k for k in ("sacn", "artnet", "osc", "midi") if getattr(rig, k) is not None]
    unknown = [k for k in kinds if k not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown outputs {unknown}; expected {sorted(REGISTRY)}")
    return [REGISTRY[k](rig) for k in kinds]


__all__ = ["Output", "OutputError", "REGISTRY", "register", "make_outputs", "SACNOutput",
           "ArtNetOutput", "OSCOutput", "MIDIOutput", "artdmx_packet"]
