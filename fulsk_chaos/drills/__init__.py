"""One experiment under every drill (Chaos Toolkit's model): its phases in order (phases), what
its ledger holds it to (ledger), what every drill shares (base: the record, the verdict, the
monitoring), the experiment and its observers (experiment, instruments); the methods plugged
into it: a restore from the ops guide's backups (restore), the load drills (load), the
fault-schedule search (schedules, schedule_search); the runbook drills (runbooks.drill) use it
the same way."""
from .ledger import LedgerPolicy
from .phases import Phase, PhaseError, Phases

__all__ = ["LedgerPolicy", "Phase", "PhaseError", "Phases"]
