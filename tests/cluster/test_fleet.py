"""``sam2rt fleet`` on a local Ray: two cameras from files; one camera actor is killed mid-stream, Ray restarts
it, and it continues with its prompts from the next frame; the status shows the restart; nothing is left."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import cv2
import pytest

from sam2rt.cli import main
from sam2rt.cluster.fleet_config import load_fleet
from sam2rt.cluster.sinks import frame_summary

FRAMES = 10
PROMPTS = {"cam-a": [{"frame": 0, "obj_id": 1, "points": [[80, 48]], "labels": [1]},
                     {"frame": 0, "obj_id": 2, "box": [10, 10, 60, 50]}],
           "cam-b": [{"frame": 0, "obj_id": 5, "points": [[40, 60]], "labels": [1]}]}


def reference(model, video: Path, prompts: list[dict], start: int) -> list[dict]:
    """A StreamTracker in this process (``model``: a loaded Model), prompted on frame ``start`` of ``video``:
    the summaries of frames start..end."""
    tracker = model.stream(bgr=True)
    capture = cv2.VideoCapture(str(video))
    frames = []
    while (ok_frame := capture.read())[0]:
        frames.append(ok_frame[1])
    tracker.load_first_frame(frames[start])
    for p in prompts:
        _, ids, logits = tracker.add_new_prompt(0, p["obj_id"], points=p.get("points"), labels=p.get("labels"),
                                                bbox=p.get("box"))
    masks = logits[:, 0] > 0
    out = [frame_summary(start, ids, masks, masks.any(axis=(1, 2)), None)]
    for i in range(start + 1, len(frames)):
        r = tracker.track(frames[i], output="result", mask_dtype=bool)
        out.append(frame_summary(i, r.obj_ids, r.masks, r.present, r.scores))
    return json.loads(json.dumps(out))  # as the sink wrote them


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_fleet_camera_killed_is_restarted_with_its_prompts(ray_local, exported_tiny_256: Path, shared_data: Path,
                                                          clip, tmp_path: Path, capsys) -> None:
    from sam2rt.cluster.fleet import Fleet, read_board

    clip(tmp_path / "a.mp4", shared_data / "videos" / "bedroom.mp4", FRAMES)
    clip(tmp_path / "b.mp4", shared_data / "videos" / "cups.mp4", FRAMES)
    cameras = [{"name": "cam-a", "source": "a.mp4", "prompts": PROMPTS["cam-a"], "masks": True, "max_fps": 5},
               {"name": "cam-b", "source": "b.mp4", "prompts": PROMPTS["cam-b"],
                "node": ray_local.nodes()[0]["NodeManagerAddress"]}]  # pinned to the (only) node
    yaml_text = json.dumps({"model": str(exported_tiny_256), "threads": 1, "out": "out", "cameras": cameras})
    (tmp_path / "fleet.yaml").write_text(yaml_text)  # JSON is YAML
    cfg = load_fleet(tmp_path / "fleet.yaml")

    fleet = Fleet(cfg, ray_local)
    try:
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline:
            row = fleet.status()["cam-a"]
            if row.get("state") == "running" and 3 <= row.get("frames", 0) <= FRAMES - 4:
                os.kill(row["pid"], signal.SIGKILL)
                killed = row["pid"]
            assert row.get("state") not in ("ended", "failed"), f"cam-a finished before it could be killed: {row}"
            time.sleep(0.05)
        assert killed is not None
        status = fleet.run(every_s=0.2, timeout_s=150)
        pids = [row["pid"] for row in status.values()]
        board = read_board(cfg, ray_local)  # what `sam2rt fleet FLEET.yaml --status --ray ADDRESS` prints
        assert (board["cam-a"]["restarts"], board["cam-b"]["restarts"]) == (1, 0)
    finally:
        fleet.shutdown()

    a, b = status["cam-a"], status["cam-b"]
    assert a["state"] == b["state"] == "ended", status
    assert (a["restarts"], b["restarts"]) == (1, 0)
    assert a["pid"] != killed and a["frames"] == b["frames"] == FRAMES
    assert a["last_error"] is None and b["last_error"] is None and a["dropped"] == b["dropped"] == 0
    resumed = a["resumed_at"]
    assert 3 <= resumed <= FRAMES - 3

    lines = {name: [json.loads(t) for t in (tmp_path / "out" / name / "results.jsonl").read_text().splitlines()]
             for name in ("cam-a", "cam-b")}
    assert [s["frame_idx"] for s in lines["cam-a"]] == list(range(FRAMES))  # nothing lost, nothing repeated
    assert [s["frame_idx"] for s in lines["cam-b"]] == list(range(FRAMES))
    masks = sorted(p.name for p in (tmp_path / "out" / "cam-a" / "masks").iterdir())
    assert masks == [f"{i:06d}.png" for i in range(FRAMES)]
    # cam-b: one stream from frame 0; cam-a after the kill: a new stream prompted again where it resumed
    from sam2rt.runtime.model import load

    model = load(exported_tiny_256, threads=1)
    assert lines["cam-a"][resumed:] == reference(model, tmp_path / "a.mp4", PROMPTS["cam-a"], resumed)
    assert lines["cam-b"] == reference(model, tmp_path / "b.mp4", PROMPTS["cam-b"], 0)
    assert [o["obj_id"] for o in lines["cam-a"][resumed]["objects"]] == [1, 2]

    # the status as the running fleet last wrote it, through the command
    assert main(["fleet", str(tmp_path / "fleet.yaml"), "--status"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["camera"][:6] == ["camera", "state", "frames", "fps", "dropped", "restarts"]
    assert rows["cam-a"][:3] == ["cam-a", "ended", str(FRAMES)] and rows["cam-a"][4:7] == ["0", "1", "-"]
    assert rows["cam-b"][4:7] == ["0", "0", "-"]

    # shutting the fleet down ended every camera process (the whole Ray instance is checked at teardown)
    deadline = time.monotonic() + 15
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, pids))


def test_fleet_command_reports_a_failed_camera(ray_local, exported_tiny_256: Path, shared_data: Path, clip,
                                              tmp_path: Path, capsys) -> None:
    """The command runs until every camera is done; a camera whose prompt does not fit fails with its error."""
    clip(tmp_path / "a.mp4", shared_data / "videos" / "bedroom.mp4", 2)
    camera = {"name": "bad", "source": "a.mp4", "prompts": [{"frame": 0, "obj_id": 1, "points": [[500, 5]],
                                                             "labels": [1]}]}
    (tmp_path / "fleet.yaml").write_text(json.dumps({"model": str(exported_tiny_256), "out": "out",
                                                     "cameras": [camera]}))
    assert main(["fleet", str(tmp_path / "fleet.yaml"), "--every", "0.2"]) == 1
    text = capsys.readouterr().out
    assert "fleet stopped" in text
    row = json.loads((tmp_path / "out" / "status.json").read_text())["cameras"]["bad"]
    assert row["state"] == "failed" and row["restarts"] == 0
    assert "outside" in row["last_error"] or "point" in row["last_error"], row["last_error"]


def test_fleet_refuses_an_unknown_node_and_more_cpus_than_there_are(ray_local, exported_tiny_256: Path,
                                                                    tmp_path: Path) -> None:
    from sam2rt.cluster.fleet import Fleet
    from sam2rt.errors import Sam2rtError

    camera = {"name": "c", "source": "0", "prompts": PROMPTS["cam-b"]}
    for extra, needle in (({"node": "10.9.9.9"}, "no live Ray node has the address 10.9.9.9"),
                          ({"cpus": 3}, "need 3 CPU (this machine's Ray has 2)")):
        (tmp_path / "f.yaml").write_text(json.dumps({"model": str(exported_tiny_256),
                                                     "cameras": [{**camera, **extra}]}))
        with pytest.raises(Sam2rtError, match=None) as info:
            Fleet(load_fleet(tmp_path / "f.yaml"), ray_local)
        assert needle in str(info.value)


@pytest.mark.parametrize("text, needle", [
    ("cameras: []", 'with "model" and a "cameras" list'),
    ("model: m\ncameras: []", '"cameras" is empty'),
    ("model: m\ncameras: [{name: a, source: x.mp4}]", "prompts must be a non-empty list"),
    ("model: m\ncameras: [{name: a, source: x.mp4, prompts: [{frame: 3, obj_id: 1, box: [0, 0, 5, 5]}]}]",
     "every entry has frame 0"),
    ("model: m\ncameras: [{name: a/b, source: 0, prompts: [{frame: 0, obj_id: 1, box: [0, 0, 5, 5]}]}]", '"name"'),
    ("model: m\nbogus: 1\ncameras: [{name: a, source: 0}]", "unknown field(s) bogus"),
])
def test_fleet_yaml_errors_name_the_fix(tmp_path: Path, text: str, needle: str) -> None:
    from sam2rt.errors import Sam2rtError

    (tmp_path / "f.yaml").write_text(text)
    with pytest.raises(Sam2rtError, match=None) as info:
        load_fleet(tmp_path / "f.yaml")
    assert needle in str(info.value)
