"""A fleet camera's parts without Ray: the results file after a kill mid-write, the ROS 2 topic, the live reader."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from sam2rt.cluster.sinks import RESULTS, FolderSink, frame_summary, label_image


def test_frame_summary_and_label_image() -> None:
    masks = np.zeros((2, 4, 6), bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 2:4, 4:6] = True  # overlaps object 0 at (2, 4)
    s = frame_summary(3, [7, 9], masks, np.array([True, False]), np.array([1.23456, -2.0], np.float32))
    assert s == {"frame_idx": 3, "height": 4, "width": 6, "objects": [
        {"obj_id": 7, "present": True, "area": 6, "box": [2, 1, 5, 3], "score": 1.2346},
        {"obj_id": 9, "present": False, "area": 4, "box": [4, 2, 6, 4], "score": -2.0}]}
    assert frame_summary(0, [1], np.zeros((1, 2, 2), bool), np.array([False]), None)["objects"][0]["box"] is None
    labels = label_image(masks)
    assert labels[1, 2] == 1 and labels[2, 4] == 2 and labels[0, 0] == 0


def test_folder_sink_resumes_after_a_partial_line(tmp_path: Path) -> None:
    sink = FolderSink(tmp_path / "cam", masks=True)
    assert sink.next_frame == 0
    masks = np.ones((1, 4, 4), bool)
    for i in range(3):
        sink.write(frame_summary(i, [1], masks, np.array([True]), None), masks)
    sink.close()
    with open(tmp_path / "cam" / RESULTS, "a") as f:
        f.write('{"frame_idx": 3, "hei')  # the process died mid-line
    again = FolderSink(tmp_path / "cam", masks=True)
    assert again.next_frame == 3
    again.write(frame_summary(3, [1], masks, np.array([True]), None), masks)
    again.close()
    lines = (tmp_path / "cam" / RESULTS).read_text().splitlines()
    assert [json.loads(t)["frame_idx"] for t in lines] == [0, 1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "cam" / "masks").iterdir()) == [f"{i:06d}.png" for i in range(4)]


@pytest.mark.ros2
def test_ros2_sink_publishes_the_summaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(101 + os.getpid() % 100))  # private, apart from tests/ros2's range
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    rclpy = pytest.importorskip("rclpy", reason="rclpy not installed: the ros extra (`make install`) adds it")
    from std_msgs.msg import String

    from sam2rt.cluster.sinks import Ros2Sink

    sink = Ros2Sink("/sam2rt_test/objects", "cam-1")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("sam2rt_fleet_listener", context=context)
    got: list[dict] = []
    node.create_subscription(String, "/sam2rt_test/objects", lambda m: got.append(json.loads(m.data)), 10)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    masks = np.ones((1, 2, 2), bool)
    try:
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:  # publish until discovery has matched the two
            sink.write(frame_summary(5, [1], masks, np.array([True]), None), masks)
            executor.spin_once(timeout_sec=0.2)
    finally:
        sink.close()
        node.destroy_node()
        context.try_shutdown()
    assert got and got[0]["frame_idx"] == 5 and got[0]["objects"][0]["area"] == 4


class _FastCamera:
    """A live source delivering frames 0..count-1 as fast as it can, then ending."""

    def __init__(self, count: int) -> None:
        self.next, self.count, self.closed = 0, count, False

    def read(self):
        if self.next >= self.count:
            return None
        time.sleep(0.001)
        self.next += 1
        return np.full((2, 2, 3), self.next - 1, np.uint8)

    def close(self) -> None:
        self.closed = True


def test_live_source_keeps_the_newest_frame_and_counts_dropped() -> None:
    from sam2rt.cluster.camera import LatestFrame

    camera = _FastCamera(200)
    frames = LatestFrame(camera)
    taken = []
    while (frame := frames.read()) is not None:
        taken.append(int(frame[0, 0, 0]))
        time.sleep(0.02)  # a tracker slower than the camera
    assert taken == sorted(taken) and len(set(taken)) == len(taken)  # newest first-come, never twice
    assert taken[-1] == 199  # the last frame is delivered before the end
    assert frames.dropped == 200 - len(taken) > 0
    frames.close()
    assert camera.closed
