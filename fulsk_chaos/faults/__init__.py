"""Faults and their rollbacks. Every fault injected is journaled and always rolled back."""
from .services import Fault, FaultRecord, Faults

__all__ = ["Fault", "FaultRecord", "Faults"]
