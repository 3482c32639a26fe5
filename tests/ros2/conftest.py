"""A real ROS 2 middleware for the node's tests: rclpy with Fast DDS, discovery kept on this machine.

Every test process uses ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a private ``ROS_DOMAIN_ID`` (from
its pid), set before rclpy initialises and passed to the node's subprocess, so nothing leaves the machine
and parallel test runs do not see each other.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

SKIP_REASON = ("rclpy not installed: `make install` adds it (extra `ros`), or source a ROS 2 distribution")


@pytest.fixture(scope="session")
def ros_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Set (and later restore) the ROS environment of this process; returns it for subprocesses."""
    values = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(1 + os.getpid() % 100),
              "ROS_LOG_DIR": str(tmp_path_factory.mktemp("ros_log")), "RCUTILS_COLORIZED_OUTPUT": "0"}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield dict(os.environ)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def ros_context(ros_env: dict[str, str]) -> Iterator[Any]:
    rclpy = pytest.importorskip("rclpy", reason=SKIP_REASON)
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    yield context
    if context.ok():
        rclpy.shutdown(context=context)


