"""The errors fulsk-chaos raises on purpose: each message says what was wrong and what to do."""
from __future__ import annotations


class FulskChaosError(Exception):
    """Base of every error the framework raises on purpose (the CLI prints these as one line)."""


class ConfigError(FulskChaosError, ValueError):
    """The configuration is wrong; the message names the key and the problem."""


class StackError(FulskChaosError, RuntimeError):
    """A service could not be started, stopped or reached; the message says what to look at."""


class FaultError(FulskChaosError, RuntimeError):
    """A fault could not be injected (unknown kind, unsupported by the provider, bad target)."""


class InstrumentError(FulskChaosError, RuntimeError):
    """The harness's own instrument failed (the proxy every edge goes through hung): what the stack
    did meanwhile is no evidence either way, neither a failure of the stack nor a pass."""
