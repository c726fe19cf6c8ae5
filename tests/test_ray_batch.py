"""Batch runs on a real local Ray (2 CPUs, started by this module): the same outputs as the
process pool, a killed worker's case retried (bounded), resume after the driver is killed,
Ctrl+C, and the clear errors (Ray missing, bad options)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from medplib_core.batch import Manifest, SpecError, load_spec, run_batch
from medplib_core.errors import MedplibError
from ray_support import local_ray
from sample_run import CT_BOX, disc_image

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_address():
    with local_ray(num_cpus=2) as address:
        yield address


def _discs(root: Path, n: int) -> list[tuple[dict, tuple]]:
    out = []
    for i in range(n):
        cy, cx, r = 60 + 3 * i, 80 + 7 * i, 18 + i % 5
        p = disc_image(root / f"disc_{i:02d}.png", cy, cx, r, seed=i)
        out.append(({"id": p.stem, "path": str(p)}, ("disc", 0, cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2)))
    return out


def _spec(root: Path, cases: list[tuple[dict, tuple]], **extra) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "prompts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "label", "type", "space", "slice", "x0", "y0", "x1", "y1"])
        for case, (label, k, *box) in cases:
            w.writerow([case["id"], label, "box", "pixel", k, *box])
    spec = {"output": "run", "engine": {"name": "litemedsam"}, "prompts": "prompts.csv",
            "cases": [c for c, _ in cases], **extra}
    (root / "spec.json").write_text(json.dumps(spec))
    return root / "spec.json"


def _real_cases(root: Path) -> list[tuple[dict, tuple]]:
    """pydicom's CT and MR slices, its 5-slice CT series and a 2D image."""
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm")
    series = Path(ct).parent / "dicomdirtests" / "98892001" / "CT5N"
    return [({"id": "ct_small", "path": ct}, ("canal", 0, *CT_BOX)),
            ({"id": "mr_small", "path": get_testdata_file("MR_small.dcm")}, ("organ", 0, 12, 10, 50, 52)),
            ({"id": "ct5", "path": str(series)}, ("organ", 2, 3, 3, 12, 12)),
            *_discs(root, 1)]


def _results(run_dir: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for rec in Manifest(run_dir).records():
        if rec.get("kind", "result") == "result":
            out.setdefault(rec["case"], []).append(rec)
    return out


def test_ray_outputs_are_the_process_pools(ray_address, tmp_path):
    cases = _real_cases(tmp_path)
    pool = run_batch(_spec(tmp_path / "pool", cases), workers=2, ray=False)
    on_ray = run_batch(_spec(tmp_path / "ray", cases, executor="ray", ray={"cpus": 1}))
    assert pool["executor"] == "pool" and on_ray["executor"] == "ray" and on_ray["workers"] == 2
    assert pool["ok"] == on_ray["ok"] == len(cases), (pool, on_ray)
    a, b = Manifest(tmp_path / "pool" / "run").latest(), Manifest(tmp_path / "ray" / "run").latest()
    for case, _ in cases:
        assert a[case["id"]]["output_sha256"] == b[case["id"]]["output_sha256"], case["id"]
        assert b[case["id"]]["counts"] == a[case["id"]]["counts"] and sum(b[case["id"]]["counts"].values())
        assert b[case["id"]]["executor"] == "ray" and b[case["id"]]["worker_pid"] != os.getpid()
    assert not list((tmp_path / "ray" / "run").glob(".ray-probe-*"))


def _driver(spec: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "medplib_core.cli.main", "batch", str(spec), "--ray", address,
                             "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)


def _wait_records(manifest: Manifest, n: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and len(manifest.latest()) < n:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.2)


def _killer(killed: list[int], times: int):
    """A progress callback that SIGKILLs the worker of a finished case (it is already running its
    next one), each worker once, ``times`` times in all."""
    def kill_worker(prog):
        rec = prog.last
        if len(killed) < times and rec and rec.get("status") == "ok" and rec["worker_pid"] not in killed:
            killed.append(rec["worker_pid"])
            os.kill(killed[-1], signal.SIGKILL)
    return kill_worker


def test_stops_kills_and_retries_keep_the_manifest_exact(ray_address, tmp_path):
    """One run of 10 cases through everything that can interrupt it (each step costs engine
    start-ups, so they share the cases): Ctrl+C, a killed driver, then a resume whose worker is
    killed twice: the cases it held are tried again on the restarted worker, up to 2 attempts."""
    n = 10
    cases = _discs(tmp_path, n)
    spec = _spec(tmp_path, cases, ray={"cpus": 1})
    manifest = Manifest(tmp_path / "run")
    # Ctrl+C: the running cases finish and are recorded, the queued ones are not run
    proc = _driver(spec, ray_address)
    _wait_records(manifest, 1, proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out.decode()[-3000:]
    after_int = manifest.latest()
    assert 1 <= len(after_int) < n - 4 and all(r["status"] == "ok" for r in after_int.values())
    # a hard kill of the driver mid-run: its workers go with it
    proc = _driver(spec, ray_address)
    _wait_records(manifest, len(after_int) + 1, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = manifest.latest()
    assert len(after_int) < len(done_before) <= n - 3, (len(after_int), len(done_before))
    pids = {r["worker_pid"] for r in done_before.values() if r["case"] not in after_int}
    deadline = time.time() + 60
    while time.time() < deadline and any(psutil.pid_exists(p) for p in pids):
        time.sleep(0.5)
    assert not any(psutil.pid_exists(p) for p in pids), "the killed driver's Ray workers are still running"
    # the re-run skips what is finished; its one worker is killed after its first case (holding
    # two more: both are tried again on the restarted worker), then after the first of those
    # (the other dies a second time: recorded failed, 2 attempts)
    killed: list[int] = []
    spec = _spec(tmp_path, cases, executor="ray", ray={"cpus": 1, "attempts": 2})
    third = run_batch(spec, workers=1, progress=_killer(killed, 2))
    latest = manifest.latest()
    assert third["skipped"] == len(done_before) and third["ok"] == n - len(done_before) - 1, third
    assert sorted(latest) == sorted(c["id"] for c, _ in cases) and len(killed) == 2
    lost = [r for r in latest.values() if r["status"] == "failed"]
    assert len(lost) == 1 and lost[0]["attempts"] == 2 and "Ray worker was lost" in lost[0]["error"], lost
    retried = [r for r in latest.values() if r["status"] == "ok" and r["attempts"] == 2]
    assert any(r["worker_pid"] == killed[1] != killed[0] for r in retried), retried
    # every case has exactly one record: nothing was recorded twice across the stops and kills
    results = _results(tmp_path / "run")
    assert all(len(recs) == 1 for recs in results.values()) and len(results) == n, results


def test_ray_missing_is_a_clear_error(tmp_path):
    spec = _spec(tmp_path, _discs(tmp_path, 1))
    code = ("import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
            "from medplib_core.cli.main import main\n"
            f"sys.exit(main(['batch', {str(spec)!r}, '--ray', 'local']))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Ray is not installed" in res.stderr and "medplib-studio[cluster]" in res.stderr
    assert not Manifest(tmp_path / "run").latest()  # nothing was run or recorded


def test_bad_ray_options_name_the_spec(tmp_path):
    from dataclasses import fields

    from medplib_core.batch.ray_executor import RayOptions
    from medplib_core.batch.spec import RAY_KEYS

    assert set(RAY_KEYS) == {f.name for f in fields(RayOptions)}  # the spec checks every option Ray takes
    bad = [({"executor": "spark"}, r"spec\.json: executor: unknown executor 'spark'; choose pool or ray"),
           ({"executor": "ray", "ray": {"gpu": 1}}, r"spec\.json: ray\.gpu: unknown Ray option 'gpu' \(did you mean 'gpus'"),
           ({"ray": {"attempts": 0}}, r"ray\.attempts: expected a whole number >= 1, got 0"),
           ({"ray": {"cpus": "two"}}, r"ray\.cpus: expected a number > 0, got 'two'"),
           ({"ray": {"workers": True}}, r"ray\.workers: expected a whole number >= 1"),
           ({"ray": {"address": ""}}, r"ray\.address: expected a Ray address"),
           ({"ray": [1]}, r"ray: expected a mapping of Ray options")]
    for extra, message in bad:
        with pytest.raises(SpecError, match=message):
            load_spec(_spec(tmp_path, _discs(tmp_path, 1), **extra))
    (tmp_path / "spec.yaml").write_text("output: run\nprompts: prompts.csv\ncases: [disc_00.png]\n"
                                        "executor: ray\nray:\n  cpus: 1\n  windw: 3\n")
    with pytest.raises(SpecError, match=r"spec\.yaml: line 7 \(ray\.windw\): unknown Ray option 'windw' "
                                        r"\(did you mean 'window'"):
        load_spec(tmp_path / "spec.yaml")
    spec = load_spec(_spec(tmp_path, _discs(tmp_path, 1), executor="RAY", ray={"cpus": 1, "attempts": None}))
    assert spec.executor == "ray" and spec.ray == {"cpus": 1}
    with pytest.raises(SpecError, match="at least 1 worker"):
        RayOptions.from_spec(spec, workers=0)


def test_workers_that_cannot_start_are_a_clear_error(ray_address, tmp_path):
    spec = _spec(tmp_path, _discs(tmp_path, 2), executor="ray",
                 engine={"name": "medplib", "checkpoint": str(tmp_path / "no-such-checkpoint")})
    with pytest.raises(MedplibError, match=r"0 GPU\(s\).*gpus: 0"):  # MedPLIB workers ask for a GPU
        run_batch(spec)
    spec = _spec(tmp_path, _discs(tmp_path, 2), executor="ray", ray={"gpus": 0, "cpus": 1, "workers": 1},
                 engine={"name": "medplib", "checkpoint": str(tmp_path / "no-such-checkpoint")})
    with pytest.raises(MedplibError, match="no Ray worker is left.*no-such-checkpoint"):
        run_batch(spec)
    assert not Manifest(tmp_path / "run").latest()  # no case was recorded: a re-run does them all
