"""Entry point of the desktop application: ``main(argv) -> int``.

``medplib-studio gui [PATH] [--sample] [--project DIR]``: opens the window; with a path it loads
that scan (or project), with ``--sample`` a real multi-slice sample volume (`app.sample`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser, with_path: bool = True) -> argparse.ArgumentParser:
    """The GUI's command-line options (also usable by the ``medplib-studio gui`` subcommand)."""
    if with_path:
        p.add_argument("path", nargs="?", help="a scan (DICOM file or folder, NIfTI, 2D image, DICOMweb series URL) or a project folder")
    p.add_argument("--sample", action="store_true", help="open a real multi-slice sample volume (mricron-data brain MRI, else pydicom-data MR)")
    p.add_argument("--series", help="SeriesInstanceUID to open from a folder with several series")
    p.add_argument("--no-engine", action="store_true", help="do not load the segmentation model")
    p.add_argument("--engine", choices=("litemedsam", "medplib"),
                   help="segmentation engine for this run (default: the saved setting, else LiteMedSAM)")
    p.add_argument("--server", metavar="URL", help="run the engines on a `medplib-studio serve` at URL "
                   "for this run (token: $MEDPLIB_SERVER_TOKEN)")
    return p


def argv_from(ns: argparse.Namespace) -> list[str]:
    """Turn parsed options back into the argv list `main` takes."""
    argv = [ns.path] if getattr(ns, "path", None) else []
    if getattr(ns, "sample", False):
        argv.append("--sample")
    if getattr(ns, "series", None):
        argv += ["--series", ns.series]
    if getattr(ns, "no_engine", False):
        argv.append("--no-engine")
    if getattr(ns, "engine", None):
        argv += ["--engine", ns.engine]
    if getattr(ns, "server", None):
        argv += ["--server", ns.server]
    return argv


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="medplib-studio gui", description="MedPLIB Studio desktop application")
    return add_arguments(p).parse_args(argv)


def _install_excepthook(log_path: Path) -> None:
    """Unexpected errors: logged with their traceback, shown as a dialog with the reason only."""

    def hook(etype, value, tb):
        text = "".join(traceback.format_exception(etype, value, tb))
        logging.getLogger("medplib_studio").error("unhandled error\n%s", text)
        try:
            from PySide6.QtWidgets import QApplication

            from .dialogs import show_error

            if QApplication.instance() is not None:
                show_error(QApplication.activeWindow(), "Something went wrong",
                           f"{etype.__name__}: {value}",
                           f"Your work is autosaved. Details are in {log_path}.")
                return
        except Exception:
            pass
        sys.__excepthook__(etype, value, tb)

    sys.excepthook = hook


def main(argv: list[str] | None = None) -> int:
    """Open the window (optionally on a scan) and run the event loop; returns the exit code."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    from .settings import APP, ORG, data_dir

    QCoreApplication.setOrganizationName(ORG)
    QCoreApplication.setApplicationName(APP)
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "medplib-studio"])
    app.setApplicationDisplayName(APP)
    log_path = data_dir() / "medplib-studio.log"
    logging.basicConfig(filename=str(log_path), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _install_excepthook(log_path)

    from .automation import run_hook
    from .main_window import MainWindow

    if args.server:  # both engines on that server for this run (the settings stay as saved)
        import os

        from medplib_core.server.location import URL_ENV

        os.environ[URL_ENV] = args.server
    factory = None
    if args.engine:
        from medplib_core.server.location import EngineLocation, segmentation_engine

        from .settings import Settings

        # the command line wins over $MEDPLIB_STUDIO_ENGINE and the "engine" setting; where it
        # runs is still Settings ▸ Engine… (or --server)
        factory = lambda: segmentation_engine(EngineLocation.from_settings(Settings()), args.engine)  # noqa: E731
    win = MainWindow(engine_factory=factory, load_engine=not args.no_engine)
    win.show()
    path = args.path
    if args.sample and not path:
        from .sample import sample_path

        try:
            path = sample_path()
        except LookupError as exc:
            from .dialogs import show_error

            show_error(win, "No sample scan", str(exc), "Install mricron-data or pydicom-data, or open a scan with File ▸ Open.")
    if path:
        win.open_path(path, args.series)
    run_hook(win, app)
    app.setQuitOnLastWindowClosed(True)
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
