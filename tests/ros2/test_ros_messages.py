"""The node's pure parts: Image conversion (row padding, encodings), per-frame results, prompt parsing, CLI.

Real sensor_msgs/Image objects, no middleware; fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sam2rt.errors import Sam2rtError

pytest.importorskip("sensor_msgs", reason="ROS 2 message packages not installed: `make install` adds them "
                                          "(extra `ros`), or source a ROS 2 distribution")
from ros_harness import image_msg  # noqa: E402  (tests/ros2 is on sys.path)

from sam2rt.ros2.convert import image_to_rgb, mono_image, mono_to_array  # noqa: E402
from sam2rt.ros2.prompts import parse_click, parse_json_prompts  # noqa: E402
from sam2rt.ros2.results import summarize  # noqa: E402

RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 5])
def test_encodings_and_row_padding(pad: int) -> None:
    assert np.array_equal(image_to_rgb(image_msg(RGB, "rgb8", 1, pad)), RGB)
    assert np.array_equal(image_to_rgb(image_msg(RGB[:, :, ::-1], "bgr8", 1, pad)), RGB)
    grey = image_to_rgb(image_msg(RGB[:, :, :1], "mono8", 1, pad))
    assert np.array_equal(grey, np.repeat(RGB[:, :, :1], 3, axis=2))
    # a driver that labels BGR frames rgb8: the encoding parameter overrides the label
    assert np.array_equal(image_to_rgb(image_msg(RGB[:, :, ::-1], "rgb8", 1, pad), "bgr8"), RGB)


def test_unsupported_and_truncated_images_are_refused() -> None:
    with pytest.raises(Sam2rtError, match="'yuv422' is not supported"):
        image_to_rgb(image_msg(RGB[:, :, :2], "yuv422", 1))
    msg = image_msg(RGB, "rgb8", 1)
    msg.data = msg.data[:-10].tobytes()
    with pytest.raises(Sam2rtError, match="bytes"):
        image_to_rgb(msg)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_mono_round_trip(dtype: type) -> None:
    from std_msgs.msg import Header

    labels = np.arange(35, dtype=dtype).reshape(5, 7) * (300 if dtype == np.uint16 else 7)
    msg = mono_image(Header(frame_id="camera"), labels)
    assert msg.encoding == ("mono8" if dtype == np.uint8 else "mono16") and msg.header.frame_id == "camera"
    assert np.array_equal(mono_to_array(msg), labels)


def test_labels_boxes_areas_and_overlap() -> None:
    logits = np.full((3, 1, 6, 8), -5.0, np.float32)
    logits[0, 0, 1:3, 1:4] = 2.0  # object 10: rows 1-2, cols 1-3
    logits[1, 0, 2:5, 3:6] = 1.0  # object 20 overlaps object 10 at (2, 3), with a lower logit
    logits[2, 0] = -1024.0  # object 30 absent (no-object gating)
    out = summarize([10, 20, 30], logits, 6, 8)
    assert out.labels.dtype == np.uint8 and out.labels[2, 3] == 1 and out.labels[4, 5] == 2
    assert set(np.unique(out.labels)) == {0, 1, 2}
    assert out.boxes == [[1, 1, 4, 3], [3, 2, 6, 5], None] and out.areas.tolist() == [6, 9, 0]
    assert out.presence[0] > 0.8 and out.presence[2] < 1e-6
    many = summarize(list(range(300)), np.ones((300, 1, 2, 2), np.float32), 2, 2)
    assert many.labels.dtype == np.uint16
    assert summarize([], None, 4, 5).labels.shape == (4, 5)


def test_json_prompts_reuse_the_prompts_file_checks() -> None:
    one = parse_json_prompts(json.dumps({"obj_id": 2, "box": [1, 2, 30, 40]}))
    assert one[0].frame is None and one[0].prompt.box == (1.0, 2.0, 30.0, 40.0)
    two = parse_json_prompts(json.dumps([{"obj_id": 1, "frame": 4, "points": [[5, 6]], "labels": [0]},
                                         {"obj_id": 3, "box": [0, 0, 9, 9]}]))
    assert [(p.prompt.obj_id, p.frame) for p in two] == [(1, 4), (3, None)]
    for bad, match in [("[]", "empty"), ('{"obj_id": 1}', "no prompt"), ('{"box": [0, 0, 1, 1]}', "obj_id"),
                       ('{"obj_id": 1, "points": [[1, 2]]}', "labels"), ('{"obj_id": 1, "colour": 3}', "unknown"),
                       ('[{"obj_id": 1, "box": [0, 0, 1, 1]}, {"obj_id": 1, "box": [0, 0, 2, 2]}]', "already")]:
        with pytest.raises(Sam2rtError, match=match):
            parse_json_prompts(bad)


def test_click_object_ids() -> None:
    assert parse_click(3, 4, 0, "7", 0).obj_id == 7  # the id travels in header.frame_id
    assert parse_click(3, 4, 0, "camera_optical_frame", 0).obj_id is None  # 0: a new object
    assert parse_click(3, 4, 0, "", 5).obj_id == 5  # the click_obj_id parameter
    assert parse_click(3, 4, -1, "", 0).label == 0 and parse_click(3, 4, 0, "", 0).label == 1
    with pytest.raises(Sam2rtError, match="finite"):
        parse_click(float("nan"), 4, 0, "", 0)


def test_cli_reports_a_missing_model_and_import_sam2rt_stays_light() -> None:
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(1 + os.getpid() % 100)}
    cmd = [sys.executable, "-m", "sam2rt", "ros2", "--model", "/nonexistent/model", "--ros-args", "-p", "threads:=1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "sam2rt: error:" in out.stderr and "/nonexistent/model" in out.stderr
    loaded = subprocess.run([sys.executable, "-c", "import sam2rt, sam2rt.cli, sam2rt.ros2, sys; "
                             "print(' '.join(sys.modules))"], capture_output=True, text=True, check=True).stdout
    assert "rclpy" not in loaded.split() and "torch" not in loaded.split() and "sam2rt.cli_ros2" in loaded.split()
