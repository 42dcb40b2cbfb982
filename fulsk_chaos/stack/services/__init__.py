"""One module per service of the reference Fulsk stack."""
from __future__ import annotations

from .backend import Backend
from .frontend import Frontend
from .mosquitto import Mosquitto
from .postgres import Postgres
from .redis import Redis
from .toxiproxy import Toxiproxy

# In start order: a service comes after what it depends on.
ALL = (Toxiproxy(), Postgres(), Redis(), Mosquitto(), Backend(), Frontend())
