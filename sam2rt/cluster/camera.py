"""A fleet camera: a Ray actor running one ``StreamTracker`` on one source, and the fleet's status board.

The classes are plain Python (``sam2rt.cluster.fleet`` wraps them with ``ray.remote``). ``CameraActor``
starts its loop in a thread from ``__init__``, so when Ray restarts a dead actor (``max_restarts``), the
constructor runs again and the camera resumes by itself: the folder sink says which frame comes next (a file
is sought there), the prompts are applied to that first frame, and ``FleetStatus`` counts the start.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from sam2rt.cluster.fleet_config import CameraSpec
from sam2rt.cluster.worker import describe

REPORT_EVERY_S = 0.5  # how often a camera sends its counters to the status board


class FleetStatus:
    """Per camera: starts (restarts = starts - 1), counters reported by the camera, last error."""

    def __init__(self) -> None:
        self.cameras: dict[str, dict[str, Any]] = {}

    def started(self, name: str, pid: int, resume_frame: int) -> int:
        """A camera actor (re)started in process ``pid`` at ``resume_frame``; returns its restart count."""
        row = self.cameras.setdefault(name, {"starts": 0, "last_error": None, "frames": 0})
        row.update(starts=row["starts"] + 1, pid=pid, resumed_at=resume_frame, state="starting",
                   frames_before=row["frames"])  # frames of earlier starts: the new process counts from 0
        return row["starts"] - 1

    def report(self, name: str, counters: dict[str, Any]) -> None:
        row = self.cameras.setdefault(name, {"starts": 0, "last_error": None, "frames": 0})
        error = counters.pop("error", None)
        counters["frames"] = row.get("frames_before", 0) + counters.get("frames", 0)
        row.update(counters)
        if error:
            row["last_error"] = error

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """name -> state, frames (all starts), fps, dropped, restarts, last_error, pid, resumed_at."""
        return {name: {**{k: v for k, v in row.items() if k != "frames_before"}, "restarts": max(0, row["starts"] - 1)}
                for name, row in sorted(self.cameras.items())}


def _open_source(spec: CameraSpec, resume: int) -> Any:
    """The camera's FrameReader (``sam2rt camera``'s, which reopens live sources); a file is read up to frame
    ``resume`` (grabbed, not decoded: seeking by position is not frame-exact in every container)."""
    from sam2rt.cli.camera import FrameReader

    reader = FrameReader(spec.source, reconnect=3)
    if spec.is_file:
        for _ in range(resume):
            if not reader.cap.grab():
                break
    return reader


class LatestFrame:
    """Reads a live source in a thread and keeps only the newest frame; frames replaced before the tracker
    took them are counted as dropped (the tracker is slower than the camera)."""

    def __init__(self, reader: Any) -> None:
        self.reader, self.dropped = reader, 0
        self._frame: Any = None
        self._ended = False
        self._closing = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._grab, daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        while not self._closing.is_set():
            frame = self.reader.read()
            with self._cond:
                if frame is None:
                    self._ended = True
                elif self._frame is not None:
                    self.dropped += 1
                self._frame = frame if frame is not None else self._frame
                self._cond.notify()
            if frame is None:
                return

    def read(self) -> Any | None:
        """The newest frame not yet taken (waiting for one), or None when the source has ended."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._ended)
            frame, self._frame = self._frame, None
            return frame

    def close(self, timeout: float = 5.0) -> None:
        """Stop grabbing, then release the source (never while the grabber is inside a read)."""
        self._closing.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.reader.close()


class CameraActor:
    """Tracks one camera until its source ends or ``stop`` is called; results go to its sinks."""

    def __init__(self, spec: CameraSpec, model: str, backend: str, threads: int, out: str, board: str) -> None:
        import ray

        self.spec, self.model, self.backend, self.threads = spec, model, backend, threads
        # the board by name, not by handle: a restarted actor gets its arguments again, and a handle passed
        # as an argument lives in the object store, where it may be gone by then
        self.folder, self.status = Path(out) / spec.name, ray.get_actor(board)
        self.counters: dict[str, Any] = {"state": "starting", "frames": 0, "fps": 0.0, "dropped": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def pid(self) -> int:
        return os.getpid()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop after the current frame; True when the loop has ended."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _report(self, **changes: Any) -> None:
        self.counters.update(changes)
        self.status.report.remote(self.spec.name, dict(self.counters))
        self.counters.pop("error", None)

    def _run(self) -> None:
        from sam2rt.cluster.sinks import FolderSink, Ros2Sink

        sinks: list[Any] = []
        try:
            folder = FolderSink(self.folder, self.spec.masks)
            sinks.append(folder)
            self.status.started.remote(self.spec.name, os.getpid(), folder.next_frame)
            if self.spec.ros2_topic:
                sinks.append(Ros2Sink(self.spec.ros2_topic, self.spec.name))
            self._track(folder.next_frame, sinks)
            self._report(state="stopped" if self._stop.is_set() else "ended")
        except Exception as e:  # a source that cannot open, prompts that do not fit: the camera fails
            self._report(state="failed", error=describe(e))
        finally:
            for sink in sinks:
                sink.close()

    def _track(self, frame_idx: int, sinks: list[Any]) -> None:
        from sam2rt.cluster.sinks import frame_summary
        from sam2rt.runtime.model import load

        tracker = load(self.model, backend=self.backend, threads=self.threads).stream(bgr=True)
        reader = _open_source(self.spec, frame_idx)
        frames = LatestFrame(reader) if not self.spec.is_file else reader
        interval = 1.0 / self.spec.max_fps if self.spec.max_fps > 0 else 0.0
        first, window, window_t, last_report, last_t = True, 0, time.perf_counter(), 0.0, 0.0
        self._report(state="running")
        try:
            while not self._stop.is_set():
                if interval:
                    time.sleep(max(0.0, last_t + interval - time.perf_counter()))
                last_t = time.perf_counter()
                frame = frames.read()
                if frame is None:
                    return
                if first:
                    summary, masks = self._prompted(tracker, frame, frame_idx)
                    first = False
                else:
                    r = tracker.track(frame, output="result", mask_dtype=bool)
                    masks = r.masks
                    summary = frame_summary(frame_idx, r.obj_ids, masks, r.present, r.scores)
                for sink in sinks:
                    sink.write(summary, masks)
                frame_idx, window = frame_idx + 1, window + 1
                self.counters["frames"] += 1
                now = time.perf_counter()
                if now - last_report >= REPORT_EVERY_S:
                    fps = window / (now - window_t) if now > window_t else 0.0
                    window, window_t, last_report = 0, now, now
                    self._report(fps=round(fps, 2), dropped=getattr(frames, "dropped", 0), next_frame=frame_idx)
        finally:
            frames.close()
            tracker.close()
            self._report(dropped=getattr(frames, "dropped", 0), next_frame=frame_idx)

    def _prompted(self, tracker: Any, frame: Any, frame_idx: int) -> tuple[dict[str, Any], Any]:
        """Frame 0 of this (re)start: load it and apply every prompt; its summary from the prompts' masks."""
        from sam2rt.cluster.sinks import frame_summary
        from sam2rt.errors import Sam2rtError
        from sam2rt.prompts_file import read_mask

        tracker.load_first_frame(frame)
        for p in self.spec.prompts:
            try:
                if p.mask is not None:
                    _, ids, logits = tracker.add_new_prompt(0, p.obj_id, mask=read_mask(p.mask, p.where))
                else:
                    _, ids, logits = tracker.add_new_prompt(0, p.obj_id, points=p.points, labels=p.labels,
                                                            bbox=p.box)
            except Sam2rtError as e:
                raise Sam2rtError(f"{p.where}: {e}") from None
        masks = logits[:, 0] > 0  # (K, H, W)
        return frame_summary(frame_idx, ids, masks, masks.any(axis=(1, 2)), None), masks
