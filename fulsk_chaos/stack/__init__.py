"""The stack under test: start it, break it, heal it, tear it down leaving nothing behind."""
from .service import Edge, ServiceSpec, Topology
from .stack import EDGES, PROVIDERS, Endpoints, Stack
from .wait import StackError

__all__ = ["EDGES", "PROVIDERS", "Edge", "Endpoints", "ServiceSpec", "Stack", "StackError", "Topology"]
