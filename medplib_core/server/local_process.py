"""A local engine process: `medplib-studio serve` as a child of the application.

The desktop application runs MedPLIB there by default, so a crash or an out-of-memory kill of
the model never takes the window (and unsaved work) with it::

    proc = LocalEngineProcess("medplib", {"checkpoint": ..., "clip": ..., "sam": ..., "device": "auto"})
    engine = proc.start()          # a RemoteEngine on 127.0.0.1, random port and token
    ...                            # the process dies: requests raise EngineConnectionError
    proc.restart()                 # same port: the same RemoteEngine reconnects by itself
    proc.stop()

The child listens on 127.0.0.1 only, with a token generated here and handed over in its
environment (never on a command line). Qt-free; the GUI drives it from a worker thread.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from medplib_core.errors import MedplibError

from . import TOKEN_ENV
from .parent_watch import PARENT_ENV

START_TIMEOUT_S = 600.0  # the full MedPLIB takes minutes to load from a slow disk


class EngineProcessError(MedplibError):
    """The engine process could not be started (the message carries the end of its output)."""


class LocalEngineProcess:
    def __init__(self, engine: str = "medplib", options: dict[str, Any] | None = None,
                 python: str | None = None, start_timeout: float = START_TIMEOUT_S,
                 extra_args: list[str] | None = None):
        self.engine = engine
        self.options = {k: v for k, v in (options or {}).items() if v not in (None, "", "auto")}
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args or [])
        self.token = secrets.token_urlsafe(32)
        self.port = 0
        self.url = ""
        self.remote = None  # the RemoteEngine, once started
        self._proc: subprocess.Popen | None = None
        self._tail: deque[str] = deque(maxlen=40)
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        cmd = [self.python, "-m", "medplib_core.cli.main", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--engine", self.engine]
        for key, value in self.options.items():
            cmd += [f"--{key}", str(value)]
        return cmd + self.extra_args

    def _spawn(self, cancel: Callable[[], bool] | None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env[TOKEN_ENV] = self.token
        env[PARENT_ENV] = str(os.getpid())  # the child exits when this process dies
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._tail.clear()
        proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, cwd=root, start_new_session=True)
        self._proc = proc
        found = threading.Event()

        def read() -> None:
            for line in proc.stdout:
                self._tail.append(line.rstrip())
                if not found.is_set() and line.startswith("listening on "):
                    self.url = line.split()[-1]
                    self.port = int(self.url.rsplit(":", 1)[1])
                    found.set()

        threading.Thread(target=read, name="engine-process-output", daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while not found.wait(0.1):
            if proc.poll() is not None or time.monotonic() > deadline or (cancel and cancel()):
                self._terminate()
                why = "stopped" if cancel and cancel() else (
                    f"exited with status {proc.returncode}" if proc.returncode is not None
                    else f"did not start within {self.start_timeout:.0f} s")
                raise EngineProcessError(f"the local {self.engine} engine process {why}:\n"
                                         + "\n".join(list(self._tail)[-12:]))

    def start(self, cancel: Callable[[], bool] | None = None):
        """Start the process and return a connected `RemoteEngine` to it."""
        from medplib_core.engines.remote import RemoteEngine

        with self._lock:
            if not self.alive:
                self._spawn(cancel)
            if self.remote is None:
                self.remote = RemoteEngine(self.url, engine=self.engine, token=self.token, mark_server=False)
            return self.remote

    def restart(self, cancel: Callable[[], bool] | None = None):
        """Start the process again after it died (on the same port when it is free, so the
        `RemoteEngine` already handed out reconnects by itself); returns that engine."""
        with self._lock:
            self._terminate()
            try:
                self._spawn(cancel)
            except EngineProcessError:
                if not self.port:
                    raise
                self.port, self.remote = 0, None  # the old port is taken: a new one, a new client
                self._spawn(cancel)
        return self.start(cancel)

    def output(self) -> str:
        """The last lines the process printed (for error messages)."""
        return "\n".join(self._tail)

    def kill(self) -> None:
        """SIGKILL (what a crash looks like); for tests and for a hung process."""
        if self.alive:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(30)

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        """End the process (idempotent)."""
        with self._lock:
            if self.remote is not None:
                try:
                    self.remote.close()
                except MedplibError:
                    pass
                self.remote = None
            self._terminate()
