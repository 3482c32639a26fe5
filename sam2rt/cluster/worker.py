"""One ``sam2rt track-batch`` worker: a Ray actor that loads the model once and tracks whole videos.

The class is plain Python (``run_batch`` wraps it with ``ray.remote``), so this module imports no Ray. Each
video goes through :func:`sam2rt.cli.track.track_video` (the code of ``sam2rt track``) with the worker's
loaded ``VideoPredictor``, into a staging folder that :func:`sam2rt.cluster.jobs.commit` renames into place.
A failing video is a failed :class:`JobResult`, never an exception: the worker goes on with the next one.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sam2rt.cluster.jobs import Job, commit, staging_folder
from sam2rt.errors import Sam2rtError


@dataclass(frozen=True)
class JobResult:
    """What became of one job. worker: the actor's index (stable across its restarts), pid: its process.

    propagated: frames the predictor produced; propagate_s: seconds inside it; wall_s: the whole job
    (opening, prompts, propagation, writing). resumed: an earlier attempt died mid-video and was cleared.
    """

    name: str
    line: int
    video: str
    ok: bool
    error: str | None = None
    frames: int = 0
    obj_ids: tuple[int, ...] = ()
    propagated: int = 0
    propagate_s: float = 0.0
    wall_s: float = 0.0
    worker: int = -1
    pid: int = -1
    host: str = ""
    resumed: bool = False


def describe(error: BaseException) -> str:
    """A user error's own message; anything else with its type (a bug or a library's error)."""
    return str(error) if isinstance(error, Sam2rtError) else f"{type(error).__name__}: {error}"


def _local_video(video: str, staging: Path) -> Path:
    """A path as it is; a URL downloaded into the staging folder (removed before the commit)."""
    if "://" not in video:
        return Path(video)
    name = Path(urllib.parse.urlparse(video).path).name or "video.mp4"
    target = staging / ".download" / name
    target.parent.mkdir()
    try:
        with urllib.request.urlopen(video, timeout=60) as response, open(target, "wb") as f:
            shutil.copyfileobj(response, f)
    except OSError as e:  # URLError is an OSError
        raise Sam2rtError(f"cannot download {video} ({e}); the URL must be readable from every node") from None
    return target


class BatchWorker:
    """Tracks whole videos with one loaded model (``sam2rt.runtime.predictor.VideoPredictor``).

    A model that cannot be loaded is remembered, not raised, so ``ready`` reports it instead of Ray
    restarting the actor forever.
    """

    def __init__(self, index: int, model: str, backend: str = "ort", threads: int = 0) -> None:
        from sam2rt.runtime.predictor import VideoPredictor

        self.index, self.model, self.backend, self.threads = index, Path(model), backend, threads
        self.error: str | None = None
        try:
            self.predictor = VideoPredictor(self.model, backend=backend, threads=threads, progress=False)
        except Exception as e:  # reported by ready(): the driver stops with this message
            self.error = describe(e)

    def ready(self) -> tuple[int, str | None]:
        """(process id, why the model could not be loaded or None)."""
        return os.getpid(), self.error

    def track(self, job: Job, out: str) -> JobResult:
        """Track ``job`` whole and commit ``OUT/<name>``; any failure is returned as a failed JobResult."""
        from sam2rt.cli.track import TrackConfig, track_video

        t0 = time.perf_counter()
        who = {"worker": self.index, "pid": os.getpid(), "host": socket.gethostname()}
        staging, resumed = staging_folder(Path(out), job)
        try:
            video = _local_video(job.video, staging)
            cfg = TrackConfig(model=self.model, video=video, prompts=job.prompts, out=staging / "overlay.mp4",
                              masks_dir=staging / "masks", backend=self.backend, threads=self.threads,
                              progress=False)
            r = track_video(cfg, predictor=self.predictor)
            shutil.rmtree(staging / ".download", ignore_errors=True)
            wall = time.perf_counter() - t0
            summary = {"name": job.name, "video": job.video, "frames": r.frames, "obj_ids": list(r.obj_ids),
                       "propagated": r.propagated, "propagate_s": round(r.propagate_s, 4),
                       "propagate_fps": round(r.propagate_fps, 3), "wall_s": round(wall, 4), **who}
            commit(staging, Path(out), job, summary)
            return JobResult(job.name, job.line, job.video, True, None, r.frames, r.obj_ids, r.propagated,
                             r.propagate_s, wall, resumed=resumed, **who)
        except Exception as e:  # a bad video or bad prompts: reported, and the next video goes on
            shutil.rmtree(staging, ignore_errors=True)
            return JobResult(job.name, job.line, job.video, False, describe(e), wall_s=time.perf_counter() - t0,
                             resumed=resumed, **who)
