"""Every family's fault kinds, by name. A new family is a module with a ``family``, and one name here."""
from __future__ import annotations

from . import process
from .catalogue import Catalogue

CATALOGUE = Catalogue(process.family)
