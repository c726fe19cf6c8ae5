"""A real local Ray for the tests: 2 CPUs, its session files in a temp folder, nothing left behind.

`local_ray()` starts Ray in this process (the driver) with this checkout's ``medplib_core``
shipped to its workers, yields the address other processes connect to (``127.0.0.1:PORT``), and
on exit shuts Ray down and checks that none of its processes outlived it (killing, by pid, any
that did, and failing).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time

import psutil
import pytest


def _ray_processes(temp_dir: str) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in proc.info["cmdline"] or ()):
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


@contextlib.contextmanager
def local_ray(num_cpus: int = 2):
    ray = pytest.importorskip("ray", reason="Ray is not installed (the cluster extra: pip install -e '.[cluster]')")
    from medplib_core.ray_cluster import code_env

    temp_dir = tempfile.mkdtemp(prefix="mpray-", dir="/tmp")  # short: Ray's socket paths must fit
    ray.init(address="local", num_cpus=num_cpus, num_gpus=0, include_dashboard=False, _temp_dir=temp_dir,
             object_store_memory=100 * 2**20, log_to_driver=False, logging_level=logging.WARNING,
             runtime_env=code_env())
    try:
        port = ray.get_runtime_context().gcs_address.rsplit(":", 1)[1]
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        deadline = time.time() + 20
        left = _ray_processes(temp_dir)
        while left and time.time() < deadline:
            time.sleep(0.5)
            left = _ray_processes(temp_dir)
        for proc in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray left processes behind: {[p.pid for p in left]}"
