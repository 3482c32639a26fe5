"""``sam2rt ros2``: run the ROS 2 node (sam2rt.ros2) with its main parameters as flags.

Each flag sets the ROS parameter of the same name; anything after ``--ros-args`` goes to rclpy unchanged
(remappings, more ``-p name:=value``). rclpy is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_ros2(sub: argparse._SubParsersAction) -> None:
    """Register the ``ros2`` subcommand."""
    p = sub.add_parser("ros2", help="run the ROS 2 node: track objects on a sensor_msgs/Image topic",
                       description="Topics, services and parameters: docs/ros2.md. Extra ROS arguments go "
                                   "after --ros-args, e.g. --ros-args -r image:=/camera/image_raw")
    p.add_argument("--model", type=Path, required=True, help="exported model directory (sam2rt export)")
    p.add_argument("--backend", default="ort", choices=("ort", "ort-gpu", "trt"),
                   help="ort (ONNX Runtime CPU), ort-gpu (onnxruntime-gpu), trt (engines from `sam2rt build`)")
    p.add_argument("--engine-dir", type=Path, default=None, help="TensorRT engines (default MODEL/engines)")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0: the backend's default)")
    p.add_argument("--max-objects", type=int, default=0,
                   help="refuse prompts beyond this many objects (default 0: the model's bank capacity)")
    p.add_argument("--publish-masks", action="store_true", help="also publish one mask image per object")
    p.add_argument("--image-topic", default="image", help="input sensor_msgs/Image topic (default: image)")
    p.add_argument("--input-encoding", default="", choices=("", "rgb8", "bgr8", "mono8"),
                   help="treat every frame as this encoding (default: the message's own)")
    p.set_defaults(func=_cmd_ros2)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as ROS parameter values (names as in sam2rt.ros2.node.PARAMETERS)."""
    return {"model": str(args.model), "backend": args.backend, "threads": args.threads,
            "engine_dir": "" if args.engine_dir is None else str(args.engine_dir), "max_objects": args.max_objects,
            "publish_masks": args.publish_masks, "image_topic": args.image_topic,
            "input_encoding": args.input_encoding}


def _cmd_ros2(args: argparse.Namespace) -> int:
    from sam2rt.ros2.entry import load_node_module

    return load_node_module().main(["sam2rt", *args.ros_args], overrides_from_args(args))
