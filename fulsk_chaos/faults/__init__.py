"""Faults and their rollbacks. Every fault injected is journaled and always rolled back."""
from .process import Fault, FaultRecord, Faults

__all__ = ["Fault", "FaultRecord", "Faults"]
