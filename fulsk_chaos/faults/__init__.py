"""Faults and their rollbacks: a catalogue of fault kinds, one module per family, behind one
injector that journals every fault, measures whether it reached its condition, and always rolls
it back."""
from .catalogue import Catalogue, Family, FaultKind, Rollback
from .injector import Fault, FaultInjector, FaultRecord
from .kinds import CATALOGUE

__all__ = ["CATALOGUE", "Catalogue", "Family", "Fault", "FaultInjector", "FaultKind", "FaultRecord", "Rollback"]
