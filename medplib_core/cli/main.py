"""`medplib-studio`: with no arguments the GUI; subcommands for command-line work.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to the handler
``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Module names under medplib_core.cli, one per subcommand family.
COMMANDS: tuple[str, ...] = ("info", "convert_labels", "batch", "medplib", "segment", "stats")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medplib-studio",
        description="MedPLIB Studio: open scans, segment, chat with MedPLIB, export labels. "
        "Run without arguments to open the desktop application.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    gui = sub.add_parser("gui", help="open the desktop application (the default)")
    # The GUI's options live with the GUI (app.main imports no Qt at module level).
    importlib.import_module("app.main").add_arguments(gui)
    gui.set_defaults(func=_run_gui)
    for name in COMMANDS:
        importlib.import_module(f"medplib_core.cli.{name}").register(sub)
    return parser


def _version() -> str:
    from medplib_core import __version__

    return f"medplib-studio {__version__}"


def _run_gui(args: argparse.Namespace) -> int:
    # The GUI lives in the separate `app` package; medplib_core itself never imports Qt.
    gui_main = importlib.import_module("app.main")
    return int(gui_main.main(gui_main.argv_from(args)) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        argv = ["gui"]
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
