"""Instruments that watch the stack from outside, as its users and inverters see it."""
from .fleet import Fleet, Key, Message
from .http import Probe, Sample, Samples

__all__ = ["Fleet", "Key", "Message", "Probe", "Sample", "Samples"]
