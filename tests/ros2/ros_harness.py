"""Test-side helpers for the node's tests: a recording client node and Image messages built by hand.

Imported by the test modules after they checked that rclpy is importable.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rclpy
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from sam2rt.ros2.convert import mono_to_array

NODE = "sam2rt"


class Client:
    """A test node that records what the sam2rt node publishes (by input stamp second) and logs."""

    def __init__(self, context: Any, max_objects: int = 8) -> None:
        self.node = rclpy.create_node("sam2rt_test_client", context=context)
        self.cond = threading.Condition()
        self.labels: dict[int, np.ndarray] = {}
        self.objects: dict[int, dict] = {}
        self.masks: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
        self.results: list[dict] = []
        self.logs: list[str] = []
        self.image_pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        sub = self.node.create_subscription
        sub(Image, f"/{NODE}/labels", lambda m: self._put(self.labels, m.header.stamp.sec, mono_to_array(m)), 10)
        sub(String, f"/{NODE}/objects", lambda m: self._put(self.objects, json.loads(m.data)["stamp"]["sec"],
                                                            json.loads(m.data)), 10)
        sub(String, f"/{NODE}/prompt_results", lambda m: self._append(self.results, json.loads(m.data)), 10)
        # the node creates a mask topic when its object appears: transient-local gets what came before matching
        masks_qos = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        for obj_id in range(1, max_objects + 1):
            sub(Image, f"/{NODE}/masks/obj_{obj_id}",
                lambda m, o=obj_id: self._put(self.masks[o], m.header.stamp.sec, mono_to_array(m)), masks_qos)
        rosout_qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        sub(Log, "/rosout", lambda m: self._append(self.logs, m.msg) if m.name == NODE else None, rosout_qos)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _put(self, table: dict, key: int, value: Any) -> None:
        with self.cond:
            table[key] = value
            self.cond.notify_all()

    def _append(self, table: list, value: Any) -> None:
        with self.cond:
            table.append(value)
            self.cond.notify_all()

    def wait(self, done: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
        """Wait until ``done()`` (checked under the lock) or fail naming ``what``."""
        end = time.monotonic() + timeout
        with self.cond:
            while not done():
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; "
                                         f"node log: {self.logs[-5:]}")
                self.cond.wait(min(left, 0.1))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.thread.join(10)


SIZE = (320, 180)  # width, height of the played frames


def frames_from(shared_data: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` bedroom frames at SIZE, (H, W, 3) uint8 RGB.

    A third of the 960x540 original: a frame (170 kB) fits Fast DDS's shared-memory transport; larger
    best-effort messages go over UDP in fragments, which a busy loopback loses.
    """
    from PIL import Image

    folder = shared_data / "videos" / "bedroom_frames"
    return [np.array(Image.open(folder / f"{i:05d}.jpg").convert("RGB").resize(SIZE, Image.BILINEAR))
            for i in range(count)]


def image_msg(pixels: np.ndarray, encoding: str, sec: int, pad: int = 0) -> Any:
    """(H, W, C) uint8 in ``encoding``'s channel order -> sensor_msgs/Image with ``pad`` bytes after each row."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    data = np.concatenate([rows, np.full((height, pad), 7, np.uint8)], axis=1) if pad else rows
    msg = Image(height=height, width=width, encoding=encoding, step=data.shape[1])
    msg.header.stamp.sec, msg.header.frame_id = sec, "camera"
    msg.data = np.ascontiguousarray(data).tobytes()
    return msg
