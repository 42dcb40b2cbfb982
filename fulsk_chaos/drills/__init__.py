"""One experiment under every drill (Chaos Toolkit's model): its phases in order (phases), what
its ledger holds it to (ledger), the experiment itself (experiment); the drills plugged into it
as methods: a restore from the ops guide's backups (restore), the load scenarios (load); the
runbook drills (runbooks.drill) and the schedule search (schedules) use it the same way."""
from .ledger import LedgerPolicy
from .phases import Phase, PhaseError, Phases

__all__ = ["LedgerPolicy", "Phase", "PhaseError", "Phases"]
