"""The node end to end over a real ROS 2 middleware (Fast DDS on localhost), started as launch files do.

``python -m sam2rt.ros2`` runs in a subprocess with the 256 px test model; this process publishes a shared
clip as sensor_msgs/Image (one frame at a time, waiting for its outputs, so none is dropped), prompts with
clicks and JSON mid-stream, calls the real services, and compares every label image and per-object mask
with a StreamTracker run directly on the same frames with the same prompts: they must be equal.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed: `make install` adds it (extra `ros`), or source a "
                                    "ROS 2 distribution")
from ros_harness import NODE, Client, frames_from, image_msg  # noqa: E402  (tests/ros2 is on sys.path)

pytestmark = [pytest.mark.ros2, pytest.mark.timeout(400)]
FRAMES = 8  # the compared stream
BOX2 = [183, 50, 266, 150]  # frames are 320x180 (ros_harness.SIZE)


class Session:
    """The node's subprocess, a recording client, and what was sent (to replay on a StreamTracker)."""

    def __init__(self, proc: subprocess.Popen, client: Client, log: Path) -> None:
        self.proc, self.client, self.log = proc, client, log

    def play(self, rgb: np.ndarray, encoding: str, sec: int, pad: int = 0, idle: bool = False) -> dict:
        """Publish one frame and wait for its label image, summary and object masks; returns the summary.

        idle: no object is tracked, so the frame may be sent again if it got lost (best effort) while
        discovery settles; an idle frame only restarts the stream, a repeat changes nothing.
        """
        pixels = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "mono8": rgb[:, :, :1]}[encoding]
        c, msg = self.client, image_msg(pixels, encoding, sec, pad)
        for _ in range(10 if idle else 1):
            c.image_pub.publish(msg)
            try:
                c.wait(lambda: sec in c.labels and sec in c.objects, f"the outputs of frame {sec}",
                       timeout=3.0 if idle else 90.0)
                break
            except AssertionError:
                if not idle:
                    raise
        c.wait(lambda: sec in c.labels and sec in c.objects, f"the outputs of frame {sec}", timeout=1.0)
        ids = [o["obj_id"] for o in c.objects[sec]["objects"]]
        c.wait(lambda: all(sec in c.masks[i] for i in ids), f"the masks of objects {ids} on frame {sec}")
        return c.objects[sec]

    def send(self, publish: Any, what: str) -> dict:
        """Publish a prompt and wait for its answer on the prompt-results topic."""
        c = self.client
        count = len(c.results)
        publish()
        c.wait(lambda: len(c.results) > count, f"the answer to {what}")
        return c.results[count]

    def click(self, x: float, y: float, z: float, frame_id: str, sec: int) -> dict:
        from geometry_msgs.msg import PointStamped

        msg = PointStamped()
        msg.header.stamp.sec, msg.header.frame_id = sec, frame_id
        msg.point.x, msg.point.y, msg.point.z = float(x), float(y), float(z)
        return self.send(lambda: self.click_pub.publish(msg), f"click {x},{y}")

    def prompt(self, text: str) -> dict:
        from std_msgs.msg import String

        return self.send(lambda: self.prompt_pub.publish(String(data=text)), f"prompt {text}")

    def call(self, name: str) -> Any:
        from std_srvs.srv import Trigger

        cli = self.client.node.create_client(Trigger, name)
        try:
            assert cli.wait_for_service(timeout_sec=30), f"service {name} did not appear"
            future = cli.call_async(Trigger.Request())
            self.client.wait(future.done, f"the answer of {name}")
            return future.result()
        finally:
            self.client.node.destroy_client(cli)


@pytest.fixture(scope="module")
def session(exported_tiny_256: Path, ros_env: dict[str, str], ros_context: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    from geometry_msgs.msg import PointStamped
    from std_msgs.msg import String

    log = tmp_path_factory.mktemp("ros_node") / "node.log"
    cmd = [sys.executable, "-m", "sam2rt.ros2", "--ros-args", "-p", f"model:={exported_tiny_256}",
           "-p", "threads:=1", "-p", "publish_masks:=true", "-p", "max_objects:=3", "-p", "diagnostics_period:=1.0"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=ros_env, stdout=out, stderr=subprocess.STDOUT)
    client = Client(ros_context)
    s = Session(proc, client, log)
    s.click_pub = client.node.create_publisher(PointStamped, "image_mouse_left", 10)
    s.prompt_pub = client.node.create_publisher(String, f"/{NODE}/prompts", 10)
    try:
        client.wait(lambda: proc.poll() is not None or (
            client.image_pub.get_subscription_count() > 0 and s.click_pub.get_subscription_count() > 0
            and s.prompt_pub.get_subscription_count() > 0), "the node to subscribe", timeout=120)
        assert proc.poll() is None, f"the node exited with {proc.returncode}: {log.read_text()[-2000:]}"
        yield s
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def reference_run(model: Path, schedule: list[tuple]) -> list[Any]:
    """The same frames and prompts on a StreamTracker, with the node's calls. Per frame a TrackResult or None."""
    from sam2rt.runtime.stream import StreamTracker

    tracker, out = StreamTracker(model, threads=1), []
    for kind, *args in schedule:
        if kind == "frame":
            if tracker.obj_ids:
                out.append(tracker.track(args[0], output="result", mask_dtype=bool))
            else:
                tracker.load_first_frame(args[0])
                out.append(None)
        else:
            obj_id, kwargs = args
            tracker.add_new_prompt(tracker.frame_idx, obj_id, **kwargs)
    return out


def test_stream_with_prompts_mid_stream_equals_stream_tracker(session: Session, exported_tiny_256: Path,
                                                              shared_data: Path) -> None:
    from sam2rt.ros2.results import summarize

    frames, schedule, secs = frames_from(shared_data, FRAMES), [], []
    for i, rgb in enumerate(frames):
        sec = 100 + i
        encoding, pad = ("rgb8", 0) if i % 2 == 0 else ("bgr8", 13)  # odd frames: BGR with padded rows
        session.play(rgb, encoding, sec, pad, idle=i <= 1)
        schedule.append(("frame", rgb))
        secs.append(sec)
        if i == 1:  # object 1 by a click whose frame_id names it, stamped for this frame
            answer = session.click(100, 100, 0.0, "1", sec)
            assert answer["ok"] and answer["obj_ids"] == [1], answer
            schedule.append(("prompt", 1, {"points": [[100.0, 100.0]], "labels": [1], "clear_old_points": False}))
        if i == 2:  # object 2 by a JSON box; object 3 by an rqt-style click (no id, zero stamp): a new id
            answer = session.prompt(json.dumps({"obj_id": 2, "box": BOX2}))
            assert answer["ok"] and answer["obj_ids"] == [1, 2], answer
            schedule.append(("prompt", 2, {"bbox": np.asarray(BOX2, np.float32)}))
            answer = session.click(50, 133, 0.0, "", 0)
            assert answer["ok"] and answer["obj_ids"] == [1, 2, 3], answer
            schedule.append(("prompt", 3, {"points": [[50.0, 133.0]], "labels": [1], "clear_old_points": False}))
        if i == 4:  # a negative correction click on object 1
            answer = session.click(110, 67, -1.0, "1", sec)
            assert answer["ok"] and "applied on the latest" not in answer["message"], answer
            schedule.append(("prompt", 1, {"points": [[110.0, 67.0]], "labels": [0], "clear_old_points": False}))
    reference = reference_run(exported_tiny_256, schedule)
    c, overlapping = session.client, 0
    for sec, rgb, ref in zip(secs, frames, reference):
        ids = [] if ref is None else ref.obj_ids
        objects = c.objects[sec]["objects"]
        assert [o["obj_id"] for o in objects] == ids
        assert np.array_equal(c.labels[sec], summarize(ref, *rgb.shape[:2]).labels), f"labels of frame {sec}"
        covered = np.zeros(rgb.shape[:2], bool)
        for k, obj_id in enumerate(ids):
            mask = c.masks[obj_id][sec] > 0
            covered |= mask
            assert np.array_equal(mask, ref.masks[k]), f"mask {obj_id} on frame {sec}"
            assert np.all(mask[c.labels[sec] == k + 1]), f"label {k + 1} outside mask {obj_id} on frame {sec}"
            x0, y0, x1, y1 = (int(v) for v in ref.boxes[k])  # inclusive corners -> the JSON's exclusive edges
            assert objects[k]["box"] == (None if x0 < 0 else [x0, y0, x1 + 1, y1 + 1])
            assert objects[k]["area"] == int(ref.masks[k].sum())
            assert objects[k]["present"] == bool(ref.scores[k] > 0)
            assert abs(objects[k]["score"] - 1 / (1 + np.exp(-float(ref.scores[k])))) < 1e-4
        assert np.array_equal(c.labels[sec] > 0, covered), f"labelled pixels of frame {sec} are not the masks'"
        overlapping += 0 if ref is None else int((ref.masks.sum(axis=0) > 1).sum())
    # not vacuous: the compared masks show all three objects and overlap (the label rule decides), the first none
    assert overlapping > 0
    assert set(np.unique(c.labels[secs[-1]])) == {0, 1, 2, 3}
    assert not c.labels[secs[0]].any() and c.objects[secs[0]]["objects"] == []


def test_remove_and_reset_services(session: Session, shared_data: Path) -> None:
    frames, c = frames_from(shared_data, 12)[FRAMES:], session.client
    session.call(f"/{NODE}/reset")
    session.play(frames[0], "mono8", 200, idle=True)
    answer = session.prompt(json.dumps([{"obj_id": 5, "box": BOX2}, {"obj_id": 7, "points": [[100, 100]],
                                                                      "labels": [1]}]))
    assert answer["ok"] and answer["obj_ids"] == [5, 7], answer
    assert [o["obj_id"] for o in session.play(frames[1], "rgb8", 201)["objects"]] == [5, 7]
    response = session.call(f"/{NODE}/remove/obj_5")
    assert response.success and json.loads(response.message)["obj_ids"] == [7], response
    summary = session.play(frames[2], "rgb8", 202)
    assert [(o["label"], o["obj_id"]) for o in summary["objects"]] == [(1, 7)]
    assert set(np.unique(c.labels[202])) <= {0, 1}
    response = session.call(f"/{NODE}/reset")
    assert response.success and json.loads(response.message)["obj_ids"] == [], response
    summary = session.play(frames[3], "rgb8", 203, idle=True)
    assert summary["objects"] == [] and not c.labels[203].any()
    c.wait(lambda: not any("remove/obj_" in n for n, _ in c.node.get_service_names_and_types()),
           "the remove services to go away", timeout=30)


def test_bad_frames_and_prompts_are_logged_and_the_node_keeps_running(session: Session, shared_data: Path) -> None:
    rgb, c = frames_from(shared_data, 1)[0], session.client
    c.image_pub.publish(image_msg(rgb[:, :, :2].copy(), "yuv422", 300))
    c.wait(lambda: any("'yuv422' is not supported" in line for line in c.logs), "a log line naming yuv422")
    answer = session.prompt('{"obj_id": 1, "box": [10, 10')
    assert not answer["ok"] and "not valid JSON" in answer["message"]
    answer = session.prompt(json.dumps({"obj_id": 1, "box": [500, 10, 100, 50]}))
    assert not answer["ok"] and "x0 < x1" in answer["message"]
    answer = session.prompt(json.dumps({"obj_id": 1, "box": [10, 10, 5000, 50]}))  # outside the 320x180 frame
    assert not answer["ok"] and "outside" in answer["message"]
    c.wait(lambda: sum("prompts refused" in line for line in c.logs) >= 3, "log lines for the refused prompts")
    assert 300 not in c.labels
    assert session.play(rgb, "rgb8", 301, idle=True)["objects"] == []  # still answering
    assert session.prompt(json.dumps({"obj_id": 1, "box": BOX2}))["ok"]
    assert session.prompt(json.dumps([{"obj_id": 2, "box": BOX2}, {"obj_id": 3, "box": BOX2},
                                      {"obj_id": 4, "box": BOX2}]))["message"].startswith("adding objects")


def test_a_burst_keeps_only_the_latest_frame(session: Session, shared_data: Path) -> None:
    frames, c = frames_from(shared_data, 6), session.client
    for attempt in range(4):  # best effort: DDS may lose a whole burst on a busy machine; then burst again
        base = 400 + 10 * attempt
        before = session.play(frames[0], "rgb8", base)["dropped_frames"]
        stamps = list(range(base + 1, base + 7))
        for i, rgb in zip(stamps, frames):  # faster than the model: the node must drop, not queue
            c.image_pub.publish(image_msg(rgb, "rgb8", i))
        last, resent = stamps[-1], 0
        while True:  # the burst's last frame itself may be lost: send it again until it is tracked
            try:
                c.wait(lambda: last in c.objects, "the last frame of the burst", timeout=15.0)
                break
            except AssertionError:
                resent += 1
                if resent > 6:
                    raise
                c.image_pub.publish(image_msg(frames[-1], "rgb8", last))
        done = [s for s in stamps if s in c.objects]
        dropped = c.objects[last]["dropped_frames"] - before
        # the node counts the frames it replaced in its mailbox; DDS's own keep-last history (depth 5) may
        # discard more before the callback sees them, which no one can count (a resent frame may count too)
        assert len(done) + dropped <= 6 + resent and done[-1] == last, (done, dropped, resent)
        if dropped >= 1:
            break
    else:
        raise AssertionError("no burst made the node drop a frame: it queues instead of keeping the latest")
    c.wait(lambda: any("FPS" in line and "dropped" in line for line in c.logs), "a diagnostics log line")


def test_clean_shutdown(session: Session) -> None:
    session.proc.send_signal(signal.SIGINT)
    assert session.proc.wait(30) == 0, session.log.read_text()[-2000:]
