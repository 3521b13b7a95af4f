"""The `headway` command: a thin layer over library functions."""

from __future__ import annotations

import argparse
import sys

from headway.commands import configure_command, register_all
from headway.errors import HeadwayError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_all(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    configure_command(parser, list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except HeadwayError as error:
        print(f"headway: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("headway: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
