"""Instruments that watch the stack from outside, as its users and inverters see it."""
from .fleet import Fleet, FleetError, FleetRecord, Fleets, Key, Message
from .http import Probe, Sample, Samples, Target
from .live import LiveFeed

__all__ = ["Fleet", "FleetError", "FleetRecord", "Fleets", "Key", "LiveFeed", "Message", "Probe", "Sample", "Samples",
           "Target"]
