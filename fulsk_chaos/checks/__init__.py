"""Measurements turned into expectations: the ledger, what users see in a steady window, the
fault window, and recovery."""
from .ledger import Alteration, LedgerResult, check_ledger, read_stored, settle, stored_keys
from .recovery import Recovery, ingest_of, wait_for_recovery
from .steady import Observation, steady_evidence, steady_figures, steady_state
from .users import Served, judge_answer
from .window import FaultWindow, fault_window

__all__ = ["Alteration", "FaultWindow", "LedgerResult", "Observation", "Recovery", "Served", "check_ledger",
           "fault_window", "judge_answer", "read_stored", "settle", "steady_evidence", "steady_figures",
           "steady_state", "stored_keys", "wait_for_recovery", "ingest_of"]
