"""Start the node from ``sam2rt ros2`` or ``python -m sam2rt.ros2``: a clear message when rclpy is missing."""

from __future__ import annotations

import sys
from typing import Any, Sequence

from sam2rt.errors import Sam2rtError

INSTALL_HINT = ("rclpy is not importable: source your ROS 2 installation (source /opt/ros/<distro>/setup.bash), "
                "or install the pip wheels with pip install 'sam2rt[ros]'")


def load_node_module() -> Any:
    """Import :mod:`sam2rt.ros2.node` (rclpy and the message packages) or raise Sam2rtError saying how to get them."""
    try:
        import rclpy  # noqa: F401  - checked first, to name the real missing piece
    except ImportError:
        raise Sam2rtError(INSTALL_HINT) from None
    try:
        from sam2rt.ros2 import node
    except ImportError as e:
        raise Sam2rtError(f"a ROS 2 message package is missing ({e}); the node needs sensor_msgs, std_msgs, "
                          "std_srvs and geometry_msgs (pip install 'sam2rt[ros]', or apt install "
                          "ros-<distro>-common-interfaces)") from None
    return node


def run(argv: Sequence[str], overrides: dict[str, Any] | None = None) -> int:
    """Run the node until shutdown; argv is passed to rclpy (its ``--ros-args`` section). Exit code."""
    try:
        return load_node_module().main(list(argv), overrides)
    except Sam2rtError as e:
        print(f"sam2rt ros2: error: {e}", file=sys.stderr)
        return 2
