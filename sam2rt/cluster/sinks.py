"""Where a fleet camera's per-frame results go: its folder, and a ROS 2 topic when asked for.

``FolderSink`` appends one JSON line per frame to ``OUT/<camera>/results.jsonl`` (and, optionally, writes the
frame's label image ``masks/<frame:06d>.png`` atomically). A camera actor killed mid-write leaves at most a
partial last line; the restarted actor cuts it off and learns from the last whole line where the camera
stopped, so a restart neither repeats nor skips a frame of a file source.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from sam2rt.errors import Sam2rtError

RESULTS = "results.jsonl"


def frame_summary(frame_idx: int, obj_ids: list[int], masks: np.ndarray, present: np.ndarray,
                  scores: np.ndarray | None) -> dict[str, Any]:
    """One frame's JSON summary. masks: (K, H, W) bool; present: (K,) bool; scores: (K,) object score
    logits, or None on a (re)start frame, whose masks come from the prompts. box: [x0, y0, x1, y1] pixel
    edges (x1, y1 exclusive), None for an empty mask."""
    objects = []
    for k, obj_id in enumerate(obj_ids):
        ys, xs = np.nonzero(masks[k])
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if xs.size else None
        objects.append({"obj_id": int(obj_id), "present": bool(present[k]), "area": int(xs.size), "box": box,
                        "score": None if scores is None else round(float(scores[k]), 4)})
    return {"frame_idx": frame_idx, "height": int(masks.shape[1]), "width": int(masks.shape[2]), "objects": objects}


def label_image(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) bool -> (H, W) uint8: object k is k + 1 (a later object wins where masks overlap)."""
    labels = np.zeros(masks.shape[1:], np.uint8)
    for k in range(min(len(masks), 255)):
        labels[masks[k]] = k + 1
    return labels


class FolderSink:
    """``folder/results.jsonl`` (one summary per line) and optional ``folder/masks/<frame:06d>.png``."""

    def __init__(self, folder: Path, masks: bool) -> None:
        self.folder, self.masks = Path(folder), masks
        self.folder.mkdir(parents=True, exist_ok=True)
        if masks:
            (self.folder / "masks").mkdir(exist_ok=True)
        self.next_frame = self._repair()
        self._file = open(self.folder / RESULTS, "a")

    def _repair(self) -> int:
        """Cut a partial last line (a kill mid-write); the frame after the last whole line (0 if none)."""
        path = self.folder / RESULTS
        if not path.exists():
            return 0
        data = path.read_bytes()
        whole = data[:data.rfind(b"\n") + 1]
        if len(whole) != len(data):
            with open(path, "r+b") as f:
                f.truncate(len(whole))
        lines = whole.splitlines()
        return json.loads(lines[-1])["frame_idx"] + 1 if lines else 0

    def write(self, summary: dict[str, Any], masks: np.ndarray) -> None:
        """Append ``summary``; the label image first, so a summary line always has its PNG."""
        if self.masks:
            import cv2

            path = self.folder / "masks" / f"{summary['frame_idx']:06d}.png"
            tmp = path.with_name(f".{path.name}.tmp.png")
            if not cv2.imwrite(str(tmp), label_image(masks)):
                raise Sam2rtError(f"cannot write {tmp}; check the disk space and permissions of {self.folder}")
            os.replace(tmp, path)
        self._file.write(json.dumps(summary) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Ros2Sink:
    """Publishes each summary as a JSON ``std_msgs/String`` on ``topic`` (needs the ros extra: rclpy)."""

    def __init__(self, topic: str, camera: str) -> None:
        try:
            import rclpy
            from std_msgs.msg import String
        except ImportError:
            raise Sam2rtError(f"camera {camera}: ros2_topic needs rclpy; install the ROS 2 extra "
                              '(pip install -e ".[ros]") or source a ROS 2 installation') from None
        self._string = String
        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self._node = rclpy.create_node(f"sam2rt_fleet_{camera.replace('-', '_').replace('.', '_')}",
                                       context=self._context)
        self._publisher = self._node.create_publisher(String, topic, 10)

    def write(self, summary: dict[str, Any], masks: np.ndarray) -> None:
        self._publisher.publish(self._string(data=json.dumps(summary)))

    def close(self) -> None:
        self._node.destroy_node()
        self._context.try_shutdown()
