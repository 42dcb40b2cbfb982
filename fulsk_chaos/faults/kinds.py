"""Every family's fault kinds, by name. A new family is a module with a ``family``, and one name here."""
from __future__ import annotations

from . import cache, clients, network, process
from .catalogue import Catalogue

CATALOGUE = Catalogue(process.family, network.family, cache.family, clients.family)
