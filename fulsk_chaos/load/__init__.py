"""Locust load against the ops guide's baselines: profiles, the generator in processes of its own,
per-window figures, the stack's and the generator's resources, and the baseline history."""
from .history import BaselineStore, Tolerance, comparable, regressions
from .profile import LoadProfile, load_profile, parse_duration
from .run import LoadResult, LoadTest
from .runner import LoadError, LoadTarget, LocustRun
from .samples import Figures, LoadSamples

__all__ = ["BaselineStore", "Figures", "LoadError", "LoadProfile", "LoadResult", "LoadSamples", "LoadTarget",
           "LoadTest", "LocustRun", "Tolerance", "comparable", "load_profile", "parse_duration", "regressions"]
