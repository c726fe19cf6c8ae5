"""Joining a Ray cluster (batch runs, engine replicas); Ray is imported only when asked for.

`connect` joins (or starts) Ray with this process's ``medplib_core`` shipped to every worker
(Ray's ``py_modules``), so all nodes run the driver's code; the nodes need the same Python
packages. Addresses: None (``RAY_ADDRESS``, else the cluster ``ray start`` left on this
machine, else a new local one), ``auto`` (a running cluster, or an error), ``local`` (a new one
on this machine), ``HOST:PORT`` or ``ray://HOST:10001`` (Ray Client).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .errors import MedplibError

RAY_MISSING = "Ray is not installed: pip install 'medplib-studio[cluster]' (or 'ray[serve]')"


def import_ray():
    """``ray``, or a clear `MedplibError` when it is not installed."""
    try:
        import ray
    except ImportError:
        raise MedplibError(RAY_MISSING) from None
    return ray


def code_env() -> dict[str, Any]:
    """The runtime environment that ships this process's ``medplib_core`` to every Ray worker."""
    import medplib_core

    return {"py_modules": [str(Path(medplib_core.__file__).resolve().parent)],
            "excludes": ["__pycache__", "*.pyc"]}


def connect(address: str | None):
    """Connect this process to Ray (unless it already is); returns (ray, True when we connected)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"runtime_env": code_env(), "log_to_driver": False, "logging_level": logging.WARNING}
    if address == "local":
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address not in (None, "local") else "Ray"
        raise MedplibError(f"cannot connect to {where}: {exc}") from None
    return ray, True
