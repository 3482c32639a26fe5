"""``sam2rt track-batch`` on a local Ray (2 CPUs, 2 workers): results equal ``sam2rt track``, broken videos
are reported, a re-run does nothing, and a worker killed mid-video loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from sam2rt.cli import main
from sam2rt.cluster.jobs import STAGING_PREFIX, SUMMARY, is_finished, model_id, read_jobs

FRAMES = 4
GOOD = {  # name -> (clip, prompts); clip "b" is prompted on frame 2, so it is also propagated in reverse
    "a1": ("a.mp4", [{"frame": 0, "obj_id": 1, "points": [[80, 48]], "labels": [1]}]),
    "a2": ("a.mp4", [{"frame": 0, "obj_id": 3, "box": [10, 10, 70, 60]},
                     {"frame": 0, "obj_id": 4, "points": [[120, 30], [100, 40]], "labels": [1, 0]}]),
    "b1": ("b.mp4", [{"frame": 2, "obj_id": 1, "box": [40, 20, 150, 90]}]),
    "b2": ("b.mp4", [{"frame": 0, "obj_id": 7, "points": [[30, 70]], "labels": [1]}]),
}
BROKEN = {
    "not-a-video": ("broken.mp4", [{"frame": 0, "obj_id": 1, "points": [[5, 5]], "labels": [1]}]),
    "outside": ("a.mp4", [{"frame": 0, "obj_id": 1, "points": [[500, 5]], "labels": [1]}]),
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, exported_tiny_256: Path, shared_data: Path, clip) -> dict:
    """Two 4-frame clips, a file that is no video, JOBS with 6 lines, and `sam2rt track` of each good job."""
    root = tmp_path_factory.mktemp("batch")
    clip(root / "a.mp4", shared_data / "videos" / "bedroom.mp4", FRAMES)
    clip(root / "b.mp4", shared_data / "videos" / "cups.mp4", FRAMES)
    (root / "broken.mp4").write_bytes(b"this is not an mp4 file\n")
    lines = [{"video": video, "prompts": prompts, "name": name} for name, (video, prompts) in {**GOOD, **BROKEN}.items()]
    lines[3]["video"] = (root / "b.mp4").as_uri()  # b2 through a URL: the worker downloads it
    (root / "jobs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for name, (video, prompts) in GOOD.items():  # the reference: one process, one video, `sam2rt track`
        (root / f"{name}.json").write_text(json.dumps(prompts))
        assert main(["track", "--model", str(exported_tiny_256), "--video", str(root / video), "--prompts",
                     str(root / f"{name}.json"), "--out", str(root / "ref" / name / "overlay.mp4"),
                     "--masks-dir", str(root / "ref" / name / "masks"), "--threads", "1"]) == 0
    return {"root": root, "model": exported_tiny_256, "jobs": root / "jobs.jsonl"}


def _frames(video: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def assert_same_as_track(out: Path, ref: Path) -> None:
    """Every mask PNG equal pixel for pixel, and the overlay videos decode to equal frames."""
    masks = sorted(p.relative_to(out / "masks") for p in (out / "masks").rglob("*.png"))
    assert masks == sorted(p.relative_to(ref / "masks") for p in (ref / "masks").rglob("*.png"))
    assert len(masks) >= FRAMES
    for rel in masks:
        got, want = cv2.imread(str(out / "masks" / rel), -1), cv2.imread(str(ref / "masks" / rel), -1)
        assert np.array_equal(got, want), rel
    got, want = _frames(out / "overlay.mp4"), _frames(ref / "overlay.mp4")
    assert len(got) == len(want) == FRAMES
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


def _cmd(batch: dict, out: Path, *extra: str) -> list[str]:
    return ["track-batch", str(batch["jobs"]), "--model", str(batch["model"]), "--out", str(out),
            "--workers", "2", "--threads", "1", *extra]


def test_batch_equals_track_reports_broken_and_reruns_nothing(ray_local, batch: dict, capsys,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = batch["root"] / "out"
    assert main(_cmd(batch, out)) == 1  # 1: some videos failed
    text = capsys.readouterr().out
    assert "videos: 4 ok, 2 failed" in text
    for name in GOOD:
        assert f"ok      {name}: {FRAMES} frames" in text
        assert_same_as_track(out / name, batch["root"] / "ref" / name)
    assert "FAILED  not-a-video: OpenCV cannot read the video" in text
    assert "FAILED  outside: " in text and "(500, 5) is outside the 160x96 video" in text
    assert "worker 0:" in text and "worker 1:" in text and "FPS on 2 workers" in text
    report = json.loads((out / "report.json").read_text())
    assert sorted(r["name"] for r in report["results"]) == sorted([*GOOD, *BROKEN])
    assert {r["worker"] for r in report["results"] if r["ok"]} == {0, 1}  # both workers took videos
    assert not list(out.glob(f"{STAGING_PREFIX}*"))

    # the second run starts no Ray at all and says so
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    def no_ray(*args, **kwargs):
        raise AssertionError("a run with nothing to do must not start Ray")

    monkeypatch.setattr("sam2rt.cluster.batch.ray_session", no_ray)
    assert main(_cmd(batch, out)) == 1
    text = capsys.readouterr().out
    assert text.startswith("nothing to do: all 4 finished videos in")
    assert "2 failed in an earlier run (add --retry-failed" in text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps


def test_finished_means_the_summary_verifies(batch: dict, tmp_path: Path) -> None:
    """A job with a missing or altered output file, or other prompts, is not finished (so it runs again)."""
    out = tmp_path / "out"
    jobs = {j.name: j for j in read_jobs(batch["jobs"], model_id(batch["model"]))}
    job = jobs["a1"]
    (out / job.name / "masks" / "1").mkdir(parents=True)
    assert not is_finished(out, job)  # no summary
    png = out / job.name / "masks" / "1" / "00000.png"
    png.write_bytes(b"x")
    from sam2rt.cluster.jobs import file_hashes

    summary = {"format": "sam2rt-track-batch/1", "key": job.key, "files": file_hashes(out / job.name)}
    (out / job.name / SUMMARY).write_text(json.dumps(summary))
    assert is_finished(out, job)
    assert not is_finished(out, jobs["a2"])  # another job's key
    png.write_bytes(b"y")
    assert not is_finished(out, job)  # altered file
    png.unlink()
    assert not is_finished(out, job)  # missing file


def test_bad_lines_are_reported_not_run(tmp_path: Path, batch: dict) -> None:
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text('{"video": "x.mp4", "prompts": [{"frame": 0, "obj_id": 1}]}\n'
                         '{"video": "x.mp4"}\n\n{not json\n'
                         '{"video": "y.mp4", "prompts": [{"frame": 0, "obj_id": 1, "box": [0, 0, 5, 5]}], "name": "y"}\n'
                         '{"video": "z.mp4", "prompts": [{"frame": 0, "obj_id": 1, "box": [0, 0, 5, 5]}], "name": "y"}\n')
    jobs = read_jobs(jobs_file, "model")
    errors = [j.error for j in jobs]
    assert "line 1 prompts entry 0: no prompt" in errors[0]
    assert 'expected {"video"' in errors[1]
    assert "not valid JSON" in errors[2]
    assert errors[3] is None and jobs[3].name == "y" and jobs[3].video == str(tmp_path / "y.mp4")
    assert "already used by line 5" in errors[4]


def test_worker_killed_mid_video_loses_and_duplicates_nothing(ray_local, batch: dict) -> None:
    """SIGKILL one worker process while it tracks a video: Ray restarts it and runs the video again."""
    from sam2rt.cluster.batch import BatchConfig, run_batch

    out = batch["root"] / "out-killed"
    cfg = BatchConfig(jobs=batch["jobs"], model=batch["model"], out=out, workers=2, threads=1, progress=False)
    pids: list[int] = []
    result: dict = {}
    runner = threading.Thread(target=lambda: result.setdefault("report", run_batch(cfg, on_started=pids.extend)))
    runner.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and runner.is_alive() and time.monotonic() < deadline:
        for staging in out.glob(f"{STAGING_PREFIX}*"):  # .staging-<job>-<pid of the worker tracking it>
            name, pid = staging.name[len(STAGING_PREFIX):].rsplit("-", 1)
            if name in GOOD and int(pid) in pids:
                os.kill(int(pid), signal.SIGKILL)
                killed = name
                break
        time.sleep(0.01)
    runner.join(timeout=180)
    assert killed is not None, "no worker was caught mid-video"
    report = result["report"]
    assert sorted(r.name for r in report.results) == sorted([*GOOD, *BROKEN])  # each job reported once
    assert {r.name for r in report.ok} == set(GOOD)
    assert [r.name for r in report.ok if r.resumed] == [killed]  # cleared the dead attempt, ran it again
    assert not list(out.glob(f"{STAGING_PREFIX}*"))
    jobs = {j.name: j for j in read_jobs(batch["jobs"], model_id(batch["model"]))}
    for name in GOOD:
        assert_same_as_track(out / name, batch["root"] / "ref" / name)
        files = {p.relative_to(out / name).as_posix() for p in (out / name).rglob("*") if p.is_file()}
        listed = json.loads((out / name / SUMMARY).read_text())["files"]
        assert files == {SUMMARY, *listed} and "overlay.mp4" in listed  # no stray file of a dead attempt
        assert is_finished(out, jobs[name])


def test_more_workers_than_local_cpus_is_refused_up_front(ray_local, batch: dict, tmp_path: Path, capsys) -> None:
    assert main(_cmd(batch, tmp_path / "out")[:-4] + ["--workers", "3"]) == 2
    assert "3 workers need 3 CPU (this machine's Ray has 2)" in capsys.readouterr().err


def test_without_ray_the_commands_say_how_to_install(tmp_path: Path, batch: dict, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(_cmd(batch, tmp_path / "out")) == 2
    assert 'pip install -e ".[ray]"' in capsys.readouterr().err
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"model: {batch['model']}\ncameras:\n  - name: c\n    source: {batch['root'] / 'a.mp4'}\n"
                     "    prompts: [{frame: 0, obj_id: 1, points: [[5, 5]], labels: [1]}]\n")
    assert main(["fleet", str(fleet)]) == 2
    assert 'pip install -e ".[ray]"' in capsys.readouterr().err


def test_import_sam2rt_imports_no_ray() -> None:
    code = ("import sys, sam2rt, sam2rt.cli, sam2rt.cluster, sam2rt.cluster.jobs, sam2rt.cluster.fleet_config, "
            "sam2rt.cluster.batch, sam2rt.cluster.fleet; sam2rt.cli.build_parser(); "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
