"""Checkers that turn what was observed into verdicts."""
from .ledger import LedgerResult, check_ledger, read_stored, settle
from .recovery import Recovery, wait_for_recovery
from .steady import Check, assert_holds, steady_state

__all__ = ["Check", "LedgerResult", "Recovery", "assert_holds", "check_ledger", "read_stored", "settle", "steady_state",
           "wait_for_recovery"]
