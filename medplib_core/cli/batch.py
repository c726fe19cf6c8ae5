"""`medplib-studio batch SPEC`: run a batch with a progress bar; Ctrl+C stops cleanly."""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="segment many cases from a YAML/JSON spec (resumable)")
    p.add_argument("spec", help="the batch spec (YAML or JSON); see medplib_core/batch/spec.py")
    p.add_argument("--workers", type=int, help="worker processes (default: one per two CPU cores, or one per GPU)")
    p.add_argument("--output", help="the run folder (default: the spec's output, which must lie inside the "
                   "spec's folder)")
    p.add_argument("--ray", nargs="?", const=True, metavar="ADDRESS",
                   help="run the cases on Ray: auto (a running cluster), local (a new one on this machine), "
                        "HOST:PORT or ray://HOST:10001; without ADDRESS: RAY_ADDRESS, a cluster started here, "
                        "else a new local one (needs medplib-studio[cluster])")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--server", metavar="URL", help="run the spec's engine on a `medplib-studio serve` "
                   "at URL (token: $MEDPLIB_SERVER_TOKEN); the cases run in this process")
    p.set_defaults(func=run)


def progress_line(prog) -> str:
    from medplib_core.batch.runner import format_duration


    width = 28
    filled = int(width * prog.done / max(prog.total, 1))
    bar = "#" * filled + "." * (width - filled)
    last = ""
    if prog.last is not None:
        last = f"  last: {prog.last.get('case')} {prog.last.get('status')}"
    return (f"[{bar}] {prog.done}/{prog.total}  ok {prog.ok}  failed {prog.failed}  skipped {prog.skipped}"
            f"  elapsed {format_duration(prog.elapsed)}  ETA {format_duration(prog.eta_s)}{last}")


def run(args: argparse.Namespace) -> int:
    from medplib_core.batch import load_spec, run_batch

    spec = load_spec(args.spec, output=args.output)
    engine = None
    if args.server and args.ray:
        from medplib_core.errors import MedplibError

        raise MedplibError("--server and --ray exclude each other: Ray workers load their own engines")
    if args.server:
        from medplib_core.engines.remote import RemoteEngine

        engine = RemoteEngine(args.server, engine=str(spec.engine.get("name", "litemedsam")))
    stop = threading.Event()
    tty = sys.stderr.isatty()

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after the running cases finish (Ctrl+C again to stop now)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)

    def show(prog) -> None:
        if args.quiet:
            return
        line = progress_line(prog)
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    try:
        summary = run_batch(spec, workers=args.workers, progress=show, stop=stop, engine=engine, ray=args.ray)
    except KeyboardInterrupt:
        print("\nstopped; finished cases are recorded in the manifest, re-run to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    if tty and not args.quiet:
        print(file=sys.stderr)
    print(f"{summary['ok']} ok, {summary['failed']} failed, {summary['skipped']} skipped of {summary['total']} "
          f"cases in {summary['elapsed_s']} s with {summary['workers']} {'Ray ' if summary['executor'] == 'ray' else ''}"
          f"worker(s); manifest: {summary['manifest']}")
    if summary["stopped"]:
        print("stopped before the end: re-run the same command to resume", file=sys.stderr)
        return 130
    return 0 if summary["failed"] == 0 else 3
