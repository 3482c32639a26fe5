"""``sam2rt track-batch`` on Ray: many videos, a pool of actors with one loaded model each.

Why actors (Ray core), not Ray tasks or Ray Data: a job is a whole video with files as output, and loading
the model is the expensive part, so a worker must outlive its jobs (a task would reload the model per video);
Ray Data would bring pyarrow/pandas and a row-oriented executor for what is a queue of a few hundred to
thousands of coarse jobs. The driver hands one job at a time to each idle actor (``ray.wait``), so a long
video never holds a queue of short ones behind it. Faults: actors have ``max_restarts=-1`` and the calls
``max_task_retries``; when a worker process dies mid-video Ray restarts it (the model is reloaded) and runs
the same call again, which clears the dead attempt's staging folder and tracks the video from the start;
outputs appear only by an atomic rename (:mod:`sam2rt.cluster.jobs`), so nothing is lost or duplicated.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sam2rt.cluster.jobs import Job, earlier_failure, is_finished, model_id, read_jobs, record_failure
from sam2rt.cluster.session import check_fits, ray_session
from sam2rt.cluster.worker import BatchWorker, JobResult
from sam2rt.errors import Sam2rtError


@dataclass(frozen=True)
class BatchConfig:
    """One ``sam2rt track-batch`` run; the CLI flags map onto these fields.

    address: a Ray cluster (None: this process's Ray session, or a new local one). threads: ONNX Runtime
    threads per graph in each worker (0: its default). retries: how often a video is run again after its
    worker died on it. retry_failed: also run jobs that failed in an earlier run.
    """

    jobs: Path
    model: Path
    out: Path
    workers: int = 1
    address: str | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    backend: str = "ort"
    threads: int = 0
    retries: int = 3
    retry_failed: bool = False
    start_timeout_s: float = 600.0
    progress: bool = True


@dataclass
class BatchReport:
    """results: the jobs run now, in JOBS order; skipped: finished earlier; failed_before: name -> error
    recorded by an earlier run; invalid: lines that cannot run. wall_s: the run (worker start included),
    start_s: worker start (model loading) alone."""

    results: list[JobResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed_before: dict[str, str] = field(default_factory=dict)
    invalid: list[JobResult] = field(default_factory=list)
    workers: int = 0
    wall_s: float = 0.0
    start_s: float = 0.0

    @property
    def ok(self) -> list[JobResult]:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.results if not r.ok] + self.invalid

    def per_worker(self) -> dict[int, dict[str, float]]:
        """worker index -> videos, frames, propagation FPS (inside the predictor), busy FPS (whole jobs)."""
        table: dict[int, dict[str, float]] = {}
        for r in self.ok:
            row = table.setdefault(r.worker, {"videos": 0, "frames": 0, "propagate_s": 0.0, "busy_s": 0.0})
            row["videos"] += 1
            row["frames"] += r.propagated
            row["propagate_s"] += r.propagate_s
            row["busy_s"] += r.wall_s
        for row in table.values():
            row["propagate_fps"] = row["frames"] / row["propagate_s"] if row["propagate_s"] else 0.0
            row["busy_fps"] = row["frames"] / row["busy_s"] if row["busy_s"] else 0.0
        return dict(sorted(table.items()))

    @property
    def throughput_fps(self) -> float:
        """Frames of all videos run now per second of the whole run (worker start included)."""
        return sum(r.propagated for r in self.ok) / self.wall_s if self.wall_s else 0.0


def plan(cfg: BatchConfig) -> tuple[list[Job], BatchReport]:
    """The jobs still to run, and a report holding those that need no run (finished, failed, invalid)."""
    jobs = read_jobs(cfg.jobs, model_id(cfg.model))
    report, todo = BatchReport(), []
    for job in jobs:
        if job.error is not None:
            report.invalid.append(JobResult(job.name, job.line, job.video, False, job.error))
        elif is_finished(cfg.out, job):
            report.skipped.append(job.name)
        elif not cfg.retry_failed and (error := earlier_failure(cfg.out, job)) is not None:
            report.failed_before[job.name] = error
        else:
            todo.append(job)
    return todo, report


def run_batch(cfg: BatchConfig, on_started: Callable[[list[int]], None] | None = None) -> BatchReport:
    """Run every job of ``cfg.jobs`` that is not finished; Ray starts only when there is one.

    on_started: called with the workers' process ids once all have loaded the model.
    """
    from sam2rt.outputs import check_writable_dir

    if cfg.workers < 1 or cfg.retries < 0 or cfg.gpus_per_worker < 0 or cfg.cpus_per_worker < 0:
        raise Sam2rtError("--workers must be >= 1 and --retries, --gpus-per-worker, --cpus-per-worker >= 0")
    check_writable_dir(cfg.out, "--out")
    t0 = time.perf_counter()
    todo, report = plan(cfg)
    if not todo:
        return report
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    with ray_session(cfg.address) as ray:
        workers = _start_workers(ray, cfg, min(cfg.workers, len(todo)), on_started)
        report.workers, report.start_s = len(workers), time.perf_counter() - t0
        try:
            results = _dispatch(ray, workers, todo, cfg)
        finally:
            for actor in workers:
                ray.kill(actor, no_restart=True)
    report.results = sorted(results, key=lambda r: r.line)
    report.wall_s = time.perf_counter() - t0
    return report


def _start_workers(ray: Any, cfg: BatchConfig, count: int,
                   on_started: Callable[[list[int]], None] | None) -> list[Any]:
    """``count`` actors with the model loaded; a Sam2rtError when they cannot start or load it."""
    check_fits(ray, cfg.address, count, cfg.cpus_per_worker, cfg.gpus_per_worker, f"{count} workers")
    remote = ray.remote(BatchWorker).options(num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker,
                                             max_restarts=-1, max_task_retries=cfg.retries)
    workers = [remote.remote(i, str(Path(cfg.model).absolute()), cfg.backend, cfg.threads) for i in range(count)]
    refs = [w.ready.remote() for w in workers]
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=cfg.start_timeout_s)
    if len(done) < len(refs):
        for w in workers:
            ray.kill(w, no_restart=True)
        raise Sam2rtError(f"{len(refs) - len(done)} of {count} workers did not start within {cfg.start_timeout_s:g} s; "
                          f"the cluster may lack the {cfg.cpus_per_worker:g} CPU / {cfg.gpus_per_worker:g} GPU each "
                          "asks for (`ray status` shows what it has): lower --workers or --gpus-per-worker")
    started = ray.get(refs)
    errors = [e for _, e in started if e]
    if errors:
        for w in workers:
            ray.kill(w, no_restart=True)
        raise Sam2rtError(f"the workers cannot load --model {cfg.model}: {errors[0]}")
    if on_started is not None:
        on_started([pid for pid, _ in started])
    return workers


def _dispatch(ray: Any, workers: list[Any], todo: list[Job], cfg: BatchConfig) -> list[JobResult]:
    """One job at a time to each idle worker until all are done; a progress bar over the jobs."""
    from tqdm import tqdm

    queue, idle = deque(todo), list(range(len(workers)))
    running: dict[Any, tuple[int, Job]] = {}
    results: list[JobResult] = []
    with tqdm(total=len(todo), desc="track-batch", unit="video", disable=not cfg.progress) as bar:
        while queue or running:
            while idle and queue:
                index, job = idle.pop(0), queue.popleft()
                running[workers[index].track.remote(job, str(Path(cfg.out).absolute()))] = (index, job)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            index, job = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as e:  # its worker died on it 1 + retries times
                result = JobResult(job.name, job.line, job.video, False,
                                   f"worker {index} died {cfg.retries + 1} times while tracking this video "
                                   f"({type(e).__name__}); nothing was written for it", worker=index)
            if not result.ok:
                record_failure(cfg.out, job, result.error or "")
            results.append(result)
            idle.append(index)
            bar.update(1)
            bar.set_postfix(failed=sum(not r.ok for r in results))
    return results
