"""What every drill shares: the order of its phases, and what its ledger holds it to."""
from .ledger import LedgerPolicy
from .phases import Phase, PhaseError, Phases

__all__ = ["LedgerPolicy", "Phase", "PhaseError", "Phases"]
