"""The process-wide thread policy (medplib_core.threads)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from medplib_core import threads

REPO = Path(__file__).resolve().parents[1]


def test_configure_sets_torch_and_opencv_and_later_models_agree():
    import cv2
    import torch

    before = threads.configured()
    try:
        assert threads.configure(1) == 1
        assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
        assert threads.inference_threads() == 1  # what OpenVINO / ONNX Runtime models compile with
        n = threads.physical_cores()
        assert threads.configure(n) == n and torch.get_num_threads() == n
    finally:
        threads.configure(before or threads.physical_cores())


def test_environment_sets_the_count_and_openmp_sleeps_when_idle():
    """In a fresh process: MEDPLIB_THREADS is the default, and importing the engines before
    PyTorch tells OpenMP's idle workers to sleep instead of spinning."""
    code = ("import os, medplib_core.engines, torch; from medplib_core import threads; "
            "print(threads.configure(), torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY'))")
    env = dict(os.environ, MEDPLIB_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("OMP_WAIT_POLICY", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-3:] == ["1", "1", "PASSIVE"]


def test_an_explicit_wait_policy_is_kept():
    code = "import os, medplib_core.engines; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = dict(os.environ, OMP_WAIT_POLICY="ACTIVE", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "ACTIVE"


def test_blas_gets_one_thread_whenever_it_was_loaded():
    """NumPy's OpenBLAS, loaded before the policy, is limited by `configure`; SciPy's, loaded
    after it, by the environment: every BLAS library of the process then runs on one thread
    (OpenBLAS's idle workers spin after each call and slowed the next OpenVINO decode)."""
    code = ("import os; os.environ.pop('OPENBLAS_NUM_THREADS', None); import numpy\n"
            "from threadpoolctl import threadpool_info\n"
            "before = [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
            "from medplib_core import threads; threads.configure(2)\n"
            "import scipy.linalg\n"
            "after = [(p['filepath'], p['num_threads']) for p in threadpool_info() if p['user_api'] == 'blas']\n"
            "print(max(before), len(after), max(n for _, n in after))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    before, libraries, most = (int(v) for v in out.stdout.split()[-3:])
    assert before > 1  # NumPy's own default on this multi-core machine: the policy has work to do
    assert libraries >= 1 and most == 1
