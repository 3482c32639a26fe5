"""The node's tracking thread on a real StreamTracker, without the middleware: prompts that come before the
first frame wait for it, object limits, a clean stop."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("sensor_msgs", reason="ROS 2 message packages not installed: `make install` adds them "
                                          "(extra `ros`), or source a ROS 2 distribution")
from ros_harness import frames_from, image_msg  # noqa: E402  (tests/ros2 is on sys.path)

from sam2rt.ros2.prompts import Click  # noqa: E402
from sam2rt.ros2.worker import Reply, Request, TrackerWorker  # noqa: E402


def test_early_prompt_waits_for_the_first_frame(exported_tiny_256: Path, shared_data: Path) -> None:
    from sam2rt.runtime.stream import StreamTracker

    frames = frames_from(shared_data, 2)
    cond, replies, published = threading.Condition(), [], []

    def record(table: list, item: object) -> None:
        with cond:
            table.append(item)
            cond.notify_all()

    def publish(header, result, frame_idx, timing) -> None:
        record(published, (header.stamp.sec, result.obj_ids, frame_idx))

    worker = TrackerWorker(StreamTracker(exported_tiny_256, threads=1), publish, lambda level, text: None,
                           lambda: None, max_objects=1)
    worker.start()
    try:
        worker.submit(Request("click", lambda r: record(replies, r), click=Click(100, 100, 1, None)))
        worker.submit(Request("reset", lambda r: record(replies, r)))  # served at once: nothing to reset
        with cond:
            assert cond.wait_for(lambda: len(replies) == 1, 30) and replies[0].ok and replies[0].obj_ids == []
        worker.put_frame(image_msg(frames[0], "rgb8", 10))
        with cond:
            assert cond.wait_for(lambda: len(replies) == 2, 60)
        click = replies[1]
        assert isinstance(click, Reply) and click.ok and click.obj_ids == [1] and click.frame_idx == 0, click
        assert published == [(10, [], 0)]  # the first frame's output came before the click was applied
        worker.submit(Request("click", lambda r: record(replies, r), click=Click(10, 10, 1, None)))
        worker.put_frame(image_msg(frames[1], "rgb8", 11))
        with cond:
            assert cond.wait_for(lambda: len(replies) == 3 and len(published) == 2, 60)
        assert not replies[2].ok and "max_objects=1" in replies[2].message
        assert published[1] == (11, [1], 1)
    finally:
        assert worker.stop()
