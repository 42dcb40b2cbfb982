"""``fulsk-chaos``: the commands that are not pytest's (building images)."""
from __future__ import annotations

import argparse
import sys

from .stack.stack import FIXTURES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fulsk-chaos")
    commands = parser.add_subparsers(dest="command", required=True)
    images = commands.add_parser("images", help="container images of the stack")
    image_commands = images.add_subparsers(dest="action", required=True)
    build = image_commands.add_parser("build", help="build the stack's images")
    build.add_argument("--offline", action="store_true",
                       help="no registry: build every image from a debootstrap'd Debian base")
    args = parser.parse_args(argv)

    from .images import build_images  # needs the docker SDK and an engine: only when asked
    if not args.offline:
        parser.error("only --offline builds are implemented: registry images are pulled by the stack itself")
    for result in build_images(FIXTURES, log=lambda line: print(f"images: {line}", file=sys.stderr)):
        state = "built" if result.built else "up to date"
        print(f"{result.image:34} {result.id[7:19]}  {state} ({result.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
