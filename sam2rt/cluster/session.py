"""Connecting to Ray: a cluster at an address, or a local instance started (and stopped) for one command."""

from __future__ import annotations

import os
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator

from sam2rt.errors import Sam2rtError

INSTALL_HINT = 'install the Ray extra: pip install -e ".[ray]" (in a checkout) or pip install "ray>=2.9"'
NAMESPACE = "sam2rt"  # named actors (a fleet's status) live here, so `sam2rt fleet --status` finds them


def require_ray() -> ModuleType:
    """The ``ray`` module, or a Sam2rtError saying how to install it."""
    # before the first import: no usage report leaves the machine
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise Sam2rtError(f"this command runs on Ray, which is not installed; {INSTALL_HINT}") from None
    return ray


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """Yield ``ray`` connected: to the running session if this process already has one (tests, notebooks),
    else to ``address`` (a cluster, e.g. ``ray://head:10001`` or ``auto``), else to a new local instance.

    What this function started it also shuts down on exit, so a local run leaves no Ray process behind.
    num_cpus: CPUs of a new local instance (None: all of this machine's).
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if address:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise Sam2rtError(f"cannot start or reach {where} ({e}); check the address (ray status on the head "
                          "node shows it) or run without --ray for a local instance") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def check_fits(ray: ModuleType, address: str | None, count: int, cpus: float, gpus: float, what: str) -> None:
    """On a local instance (no address), refuse up front what could never be placed (Ray would wait for a
    node that never comes); a cluster may grow (autoscaler), so there Ray's own wait applies."""
    if address:
        return
    have = ray.cluster_resources()
    need = {"CPU": count * cpus, "GPU": count * gpus}
    short = {k: v for k, v in need.items() if v > have.get(k, 0.0) + 1e-9}
    if short:
        listing = ", ".join(f"{need[k]:g} {k} (this machine's Ray has {have.get(k, 0.0):g})" for k in short)
        raise Sam2rtError(f"{what} need {listing}; ask for fewer, or less each (--cpus-per-worker 0.5, "
                          "--gpus-per-worker, or a camera's cpus/gpus)")
