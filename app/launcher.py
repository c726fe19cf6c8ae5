"""``medplib-studio``: the desktop application (the default, or ``gui``) or a headless subcommand.

The subcommands are the core's (`medplib_core.cli.main`); this launcher adds ``gui`` to them
and imports Qt only when the window opens, so ``medplib-studio info scan.dcm`` stays headless.
Anything that is not a subcommand opens the window, as other viewers do: ``medplib-studio
scan.dcm`` and ``medplib-studio --sample`` mean ``medplib-studio gui scan.dcm`` / ``gui --sample``.
"""

from __future__ import annotations

import argparse
import sys

from medplib_core.cli import main as core_cli

from .main import add_arguments, argv_from


def _add_gui(sub) -> None:
    gui = sub.add_parser("gui", help="open the desktop application (the default)")
    add_arguments(gui)
    gui.set_defaults(func=_run_gui)


def _run_gui(args: argparse.Namespace) -> int:
    from .main import main as gui_main

    return int(gui_main(argv_from(args)) or 0)


def commands(parser: argparse.ArgumentParser) -> set[str]:
    """The subcommand names ``parser`` knows."""
    return {name for action in parser._subparsers._group_actions  # noqa: SLF001 (argparse has no API)
            for name in getattr(action, "choices", {}) or {}}


def with_command(argv: list[str], known: set[str]) -> list[str]:
    """``argv`` with ``gui`` in front unless it starts with a subcommand or a top-level option."""
    if argv and (argv[0] in known or argv[0] in ("-h", "--help", "--version")):
        return argv
    return ["gui", *argv]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = core_cli.build_parser(extra=_add_gui)
    parser.description += " Without a command (or with a path) it opens the desktop application."
    return core_cli.run(parser.parse_args(with_command(argv, commands(parser))), parser)


if __name__ == "__main__":
    sys.exit(main())
