"""The stack under test, composed from the service catalogue: start it, heal it, tear it down
leaving nothing behind. Providers: local processes (``local.py``) or containers (``docker.py``)."""
from ..errors import StackError
from .running import Provider, Service
from .stack import PROVIDERS, Endpoints, Stack

__all__ = ["PROVIDERS", "Endpoints", "Provider", "Service", "Stack", "StackError"]
