"""``python -m sam2rt.ros2 --ros-args -p model:=DIR [-p backend:=trt ...]``: the node, for launch files."""

from __future__ import annotations

import sys

from sam2rt.ros2.entry import run


if __name__ == "__main__":
    sys.exit(run(sys.argv))
