"""The headless subcommands of ``medplib-studio``: ``python -m medplib_core.cli.main COMMAND``.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to the handler ``func(args) -> int``. The desktop
application is not here: ``medplib-studio`` itself is `app.launcher`, which adds the ``gui``
command (the default) through `build_parser`'s ``extra`` hook and dispatches the rest to `run`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from . import batch, convert_labels, info, lite_models, medplib, segment, serve, stats

# One module per subcommand family, in the order ``--help`` lists them.
COMMANDS = (info, convert_labels, batch, medplib, segment, stats, serve, lite_models)


def build_parser(extra: Callable[[Subparsers], None] | None = None) -> argparse.ArgumentParser:
    """The ``medplib-studio`` parser; ``extra(subparsers)`` adds commands of another package."""
    parser = argparse.ArgumentParser(
        prog="medplib-studio",
        description="MedPLIB Studio: open scans, segment, chat with MedPLIB, export labels.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if extra is not None:
        extra(sub)
    for module in COMMANDS:
        module.register(sub)
    return parser


def _version() -> str:
    from medplib_core import __version__

    return f"medplib-studio {__version__}"


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run a parsed subcommand; errors of the `MedplibError` family become one line and exit 1."""
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from medplib_core.errors import MedplibError

    try:
        return int(args.func(args) or 0)
    except MedplibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
