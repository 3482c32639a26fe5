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
from sam2rt.ros2.results import summarize, summary_dict  # noqa: E402
from sam2rt.runtime.outputs import make_result  # noqa: E402

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


def test_presence_boxes_and_areas_come_from_the_track_result() -> None:
    low = np.full((3, 1, 4, 4), -20.0, np.float32)
    low[0, 0] = [7, 5, 3, -20]  # object 10: columns 0-4 of the 8x6 frame
    low[1, 0, :3] = [-20, 3, 5, 7]  # object 20: columns 3-7, rows 0-3
    low[2, 0] = -1024.0  # object 30 absent (no-object gating)
    result = make_result(5, [10, 20, 30], low, np.array([4.0, -0.5, -9.0], np.float32), (6, 8))
    out = summarize(result, 6, 8)
    assert out.obj_ids == [10, 20, 30] and out.labels.dtype == np.uint8 and out.masks.dtype == np.bool_
    assert np.array_equal(out.masks, result.masks)
    assert out.boxes == [[0, 0, 5, 6], [3, 0, 8, 4], None] and out.areas.tolist() == [30, 20, 0]
    # presence is the object score, not the mask: object 20 has pixels but a negative score
    assert out.present.tolist() == [True, False, False]
    assert np.allclose(out.presence, 1 / (1 + np.exp(-np.array([4.0, -0.5, -9.0]))), atol=1e-7)
    summary = summary_dict(out, 5, {"compute_ms": 1.23456})
    assert summary["objects"][1] == {"label": 2, "obj_id": 20, "present": False, "score": 0.3775,
                                     "box": [3, 0, 8, 4], "area": 20}
    assert summary["compute_ms"] == 1.235 and summary["label_encoding"] == "mono8"
    many = summarize(make_result(0, list(range(300)), np.ones((300, 1, 2, 2), np.float32),
                                 np.ones(300, np.float32), (2, 2)), 2, 2)
    assert many.labels.dtype == np.uint16 and set(np.unique(many.labels)) == {1}  # all tie: the first wins
    empty = summarize(None, 4, 5)
    assert empty.labels.shape == (4, 5) and empty.masks.shape == (0, 4, 5) and empty.boxes == []


def test_overlap_goes_to_the_highest_interpolated_logit() -> None:
    low = np.full((2, 1, 4, 4), -20.0, np.float32)
    low[0, 0] = [7, 5, 3, -20]  # A fades to the right
    low[1, 0] = [-20, 3, 5, 7]  # B fades to the left
    result = make_result(0, [1, 2], low, np.ones(2, np.float32), (6, 8))
    both = result.masks[0] & result.masks[1]
    assert np.array_equal(np.flatnonzero(both.any(axis=0)), [3, 4])  # the overlap: columns 3 and 4
    labels = summarize(result, 6, 8).labels
    # 4 -> 8 columns, align_corners=False: column 3 samples x = 1.25 (A 4.5 > B 3.5), column 4 x = 1.75
    # (A 3.5 < B 4.5). Neither "first object wins" nor "last object wins" gives this.
    assert np.array_equal(labels, np.tile([1, 1, 1, 1, 2, 2, 2, 2], (6, 1))), labels


def test_overlap_rule_equals_the_full_frame_argmax() -> None:
    import cv2

    rng = np.random.default_rng(1)  # 3 smooth objects, each on most of a 300x400 frame: > 1 chunk of overlap
    low = (cv2.resize(rng.normal(0.5, 2.0, (3, 4, 4)).transpose(1, 2, 0), (64, 64), interpolation=cv2.INTER_CUBIC)
           .transpose(2, 0, 1)[:, None].astype(np.float32))
    result = make_result(0, [1, 2, 3], low, np.ones(3, np.float32), (300, 400))
    overlap = result.masks.sum(axis=0) > 1
    assert overlap.sum() > 1 << 16 and len(np.unique(summarize(result, 300, 400).labels[overlap])) == 3
    full = np.stack([cv2.resize(p[0], (400, 300), interpolation=cv2.INTER_LINEAR) for p in low])  # the reference
    expected = np.where(result.masks.any(axis=0), np.argmax(np.where(result.masks, full, -np.inf), axis=0) + 1, 0)
    labels = summarize(result, 300, 400).labels
    top2 = np.sort(np.where(result.masks, full, -np.inf), axis=0)[-2:]
    with np.errstate(invalid="ignore"):  # cv2's float rounding may differ from the tracker's in the last bit
        near_tie = overlap & (top2[1] - top2[0] < 1e-4)
    assert np.array_equal(labels[~near_tie], expected[~near_tie]) and near_tie.sum() < 20


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
    assert "rclpy" not in loaded.split() and "torch" not in loaded.split() and "sam2rt.cli.ros2" in loaded.split()
