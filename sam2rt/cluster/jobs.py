"""The jobs of ``sam2rt track-batch`` and their outputs (no Ray here: the driver and every worker use it).

JOBS is a JSON-lines file, one video per line::

    {"video": "clips/a.mp4", "prompts": [{"frame": 0, "obj_id": 1, "box": [10, 20, 200, 300]}]}
    {"video": "https://host/b.mp4", "prompts": "prompts/b.json", "name": "b"}

``video``: a path (relative to the JOBS file's folder) or a URL, readable by every node. ``prompts``: a list
in the prompts format of ``sam2rt track`` (mask paths relative to the JOBS file's folder) or the path of a
prompts file. ``name`` (optional): the job's output folder, by default ``<video stem>-<8 hex digits>``.

Each finished job is a folder ``OUT/<name>/`` holding ``overlay.mp4``, ``masks/<obj_id>/<frame:05d>.png``
and ``summary.json``. A worker writes all of it into a hidden staging folder ``OUT/.staging-<name>-<pid>``
and renames that into place at the end, so ``OUT/<name>`` appears whole or not at all. The summary records
the job's key (video, prompts, model) and the SHA-256 of every file; a job counts as finished only when
its summary exists, names the same key and every file it lists is there with that hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2rt.errors import Sam2rtError
from sam2rt.prompts_file import Prompt, load_prompts, parse_prompts

SUMMARY = "summary.json"
SUMMARY_FORMAT = "sam2rt-track-batch/1"
STAGING_PREFIX = ".staging-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Job:
    """One line of JOBS. error: why the line cannot run (the job is then reported failed, never tracked)."""

    line: int
    name: str
    video: str
    prompts: tuple[Prompt, ...]
    key: str  # SHA-256 of (video, prompts, model): what a summary must name to count as this job's
    error: str | None = None


def model_id(model: Path) -> str:
    """SHA-256 of the model's manifest (it records the checkpoint hash and the export settings)."""
    manifest = Path(model) / "manifest.json"
    try:
        return hashlib.sha256(manifest.read_bytes()).hexdigest()
    except OSError:
        raise Sam2rtError(f"--model {model}: no readable manifest.json; pass a model folder made by "
                          "`sam2rt export`") from None


def read_jobs(path: Path, model: str) -> list[Job]:
    """Parse JOBS (``model``: :func:`model_id`). A bad line becomes a Job with ``error`` set; only an
    unreadable or empty file raises."""
    path = Path(path).absolute()  # videos and masks relative to it become absolute: workers run elsewhere
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise Sam2rtError(f"JOBS {path}: cannot read it ({e}); pass a JSON-lines file, one video per line") from None
    jobs: list[Job] = []
    for number, text in enumerate(lines, start=1):
        if text.strip():
            jobs.append(_parse_line(text, number, path, model))
    if not jobs:
        raise Sam2rtError(f"JOBS {path} has no job; write one JSON object per line, e.g. "
                          '{"video": "clip.mp4", "prompts": [{"frame": 0, "obj_id": 1, "box": [0, 0, 50, 50]}]}')
    return _unique_names(jobs)


def _parse_line(text: str, number: int, path: Path, model: str) -> Job:
    where = f"{path} line {number}"
    try:
        entry = json.loads(text)
        if not isinstance(entry, dict) or not isinstance(entry.get("video"), str) or "prompts" not in entry:
            raise Sam2rtError(f'{where}: expected {{"video": PATH_OR_URL, "prompts": [...] or "file.json"}}')
        unknown = sorted(set(entry) - {"video", "prompts", "name"})
        if unknown:
            raise Sam2rtError(f"{where}: unknown field(s) {', '.join(unknown)}; valid: video, prompts, name")
        video = entry["video"] if "://" in entry["video"] else str(path.parent / entry["video"])
        prompts = _prompts(entry["prompts"], where, path.parent)
        key = _key(video, prompts, model)
        name = entry.get("name") or f"{Path(entry['video'].split('?')[0]).stem or 'video'}-{key[:8]}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise Sam2rtError(f"{where}: name {name!r} must be letters, digits, '_', '.' or '-' (not first)")
        return Job(number, name, video, tuple(prompts), key)
    except ValueError as e:  # json.JSONDecodeError
        return Job(number, f"line-{number}", "", (), "", f"{where}: not valid JSON ({e})")
    except Sam2rtError as e:
        return Job(number, f"line-{number}", "", (), "", str(e))


def _prompts(value: Any, where: str, base: Path) -> list[Prompt]:
    if isinstance(value, str):
        return load_prompts(base / value)
    return parse_prompts(value, f"{where} prompts", base)


def _key(video: str, prompts: list[Prompt], model: str) -> str:
    def plain(p: Prompt) -> dict[str, Any]:  # `where` names the line: moving a job keeps its key
        return {"frame": p.frame, "obj_id": p.obj_id, "points": p.points, "labels": p.labels, "box": p.box,
                "mask": None if p.mask is None else _file_sha256(p.mask)}

    text = json.dumps({"video": video, "prompts": [plain(p) for p in prompts], "model": model}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _unique_names(jobs: list[Job]) -> list[Job]:
    """A second job with the same output folder is an error of that line (the first one runs)."""
    seen: dict[str, int] = {}
    out = []
    for job in jobs:
        if job.error is None and job.name in seen:
            job = Job(job.line, f"line-{job.line}", "", (), "", f"line {job.line}: output folder {job.name!r} is "
                      f"already used by line {seen[job.name]}; give one of them another \"name\"")
        seen.setdefault(job.name, job.line)
        out.append(job)
    return out


# --------------------------------------------------------------------------- outputs


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative POSIX path -> SHA-256), the summary itself excluded."""
    return {p.relative_to(folder).as_posix(): _file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != SUMMARY}


def is_finished(out: Path, job: Job) -> bool:
    """``OUT/<name>/summary.json`` exists, names this job's key and every file it lists has its hash."""
    folder = Path(out) / job.name
    try:
        summary = json.loads((folder / SUMMARY).read_text())
        if summary.get("format") != SUMMARY_FORMAT or summary.get("key") != job.key:
            return False
        files = summary["files"]
        return bool(files) and all(_file_sha256(folder / rel) == sha for rel, sha in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def read_summary(out: Path, job: Job) -> dict[str, Any]:
    """The summary of a finished job."""
    return json.loads((Path(out) / job.name / SUMMARY).read_text())


def staging_folder(out: Path, job: Job) -> tuple[Path, bool]:
    """(a new, empty staging folder for one attempt at ``job``, whether an earlier attempt's was removed).

    An earlier attempt's folder is what a worker that died mid-video left. Only one attempt of a job runs
    at a time (the driver sees to it), so any such folder is stale.
    """
    prefix = f"{STAGING_PREFIX}{job.name}-"
    stale = [p for p in Path(out).glob(f"{prefix}*")
             if re.fullmatch(r"(old-)?\d+", p.name[len(prefix):])]  # not another job's (name "a" vs "a-b")
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    folder = Path(out) / f"{prefix}{os.getpid()}"
    folder.mkdir(parents=True)
    return folder, bool(stale)


def failure_path(out: Path, job: Job) -> Path:
    """Where a failed job's error is recorded: ``OUT/<name>.failed.json``."""
    return Path(out) / f"{job.name}.failed.json"


def record_failure(out: Path, job: Job, error: str) -> None:
    """Remember that ``job`` failed, so the next run skips it (unless asked to retry failed jobs)."""
    path = failure_path(out, job)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"format": SUMMARY_FORMAT, "key": job.key, "video": job.video, "error": error}))
    os.replace(tmp, path)


def earlier_failure(out: Path, job: Job) -> str | None:
    """The error a previous run recorded for this very job (same key), or None."""
    try:
        record = json.loads(failure_path(out, job).read_text())
        return record["error"] if record.get("key") == job.key else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def commit(staging: Path, out: Path, job: Job, summary: dict[str, Any]) -> None:
    """Write the summary (with the files' hashes) into ``staging`` and rename it to ``OUT/<name>``; an
    unfinished folder of the same name (an older run, other prompts) is replaced."""
    summary = {"format": SUMMARY_FORMAT, "key": job.key, **summary, "files": file_hashes(staging)}
    tmp = staging / f".{SUMMARY}.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, staging / SUMMARY)
    final = Path(out) / job.name
    if final.exists():
        trash = Path(out) / f"{STAGING_PREFIX}{job.name}-old-{os.getpid()}"
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(staging, final)
    failure_path(out, job).unlink(missing_ok=True)
