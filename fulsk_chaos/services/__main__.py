"""``python3 -S -m fulsk_chaos.services --commands``: every program the catalogue's services run on
the local stack, as COMMAND:PACKAGE lines, for scripts/bootstrap.sh. It runs before pip has
installed anything (-S: no site-packages), so the catalogue imports only the standard library."""
from __future__ import annotations

import sys

from . import CATALOGUE


def main(argv: list[str]) -> int:
    if argv != ["--commands"]:
        print("usage: python3 -S -m fulsk_chaos.services --commands", file=sys.stderr)
        return 2
    for command, package in CATALOGUE.commands().items():
        print(f"{command}:{package}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
