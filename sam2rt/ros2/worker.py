"""The node's tracking thread: the only thread that touches the ``StreamTracker`` (no ROS imports here).

ROS callbacks only hand things over and return: a frame goes into a one-slot mailbox (a newer frame replaces
an unprocessed one, which counts as dropped, so a slow model never builds a backlog); prompts, removals and
resets go into a queue. The thread serves requests between frames, in arrival order, so a prompt is applied
on the frame that was current when it was served. A request stamped for the frame waiting in the mailbox is
served right after that frame is tracked (the frame it was stamped for); any other stamp, or none, goes to
the latest frame. Prompts that arrive before the first frame wait for it.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from sam2rt.errors import Sam2rtError
from sam2rt.ros2.convert import image_to_rgb
from sam2rt.ros2.prompts import Click, JsonPrompt, check_fits, prompt_kwargs
from sam2rt.ros2.results import FrameObjects, summarize

Stamp = tuple[int, int]  # (sec, nanosec) of a std_msgs/Header
MAX_WAITING = 64  # prompts held for the first frame; older ones are refused beyond this
REFUSAL_LOG_S = 5.0  # the same refused-frame reason is logged at most this often


@dataclass
class Reply:
    """What a request did: the resulting object ids on ``frame_idx``, or why it was refused."""

    ok: bool
    message: str
    obj_ids: list[int] = field(default_factory=list)
    frame_idx: int = -1


@dataclass
class Request:
    """kind: "click", "prompts", "remove" or "reset"; ``done`` receives the Reply (on the worker thread)."""

    kind: str
    done: Callable[[Reply], None]
    stamp: Stamp | None = None
    frame: int | None = None  # JSON prompts: the stream frame index they name
    click: Click | None = None
    prompts: list[JsonPrompt] | None = None
    obj_id: int | None = None


@dataclass
class Stats:
    """Counters since the last ``take_stats`` (the diagnostics window) and in total."""

    frames: int = 0
    dropped: int = 0
    refused: int = 0
    latency_ms: list[float] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)
    dropped_total: int = 0


def header_stamp(header: Any) -> Stamp | None:
    """A header's stamp as (sec, nanosec); None for the zero stamp ("no particular frame")."""
    stamp = (int(header.stamp.sec), int(header.stamp.nanosec))
    return None if stamp == (0, 0) else stamp


class TrackerWorker:
    """Runs ``tracker`` on the latest frame and serves prompt requests, on one thread.

    publish(header, result, frame_idx, timing) is called on the worker thread for every processed frame;
    log(level, text) with level "info"/"warn"/"error"; objects_changed() after the set of objects changed.
    """

    def __init__(self, tracker: Any, publish: Callable[[Any, FrameObjects, int, dict[str, float]], None],
                 log: Callable[[str, str], None], objects_changed: Callable[[], None],
                 max_objects: int, encoding: str = "") -> None:
        self.tracker, self.publish, self.log, self.objects_changed = tracker, publish, log, objects_changed
        self.max_objects, self.encoding = max_objects, encoding
        self._cond = threading.Condition()
        self._frame: tuple[Any, float] | None = None  # (Image msg, receipt time)
        self._requests: list[Request] = []
        self._waiting: list[Request] = []  # prompts that came before the first frame
        self._stop = False
        self._stats = Stats()
        self._obj_ids: list[int] = []
        self._stamp: Stamp | None = None  # of the current (last tracked) frame
        self._size: tuple[int, int] | None = None
        self._last_refusal: tuple[str, float] = ("", 0.0)
        self._thread = threading.Thread(target=self._run, name="sam2rt-tracker", daemon=True)

    # ---- called from ROS callbacks (any thread): never block on the model ------------------------------
    def put_frame(self, msg: Any) -> None:
        """Make ``msg`` the next frame; an unprocessed older frame is dropped (and counted)."""
        with self._cond:
            if self._frame is not None:
                self._stats.dropped += 1
                self._stats.dropped_total += 1
            self._frame = (msg, time.perf_counter())
            self._cond.notify()

    def submit(self, request: Request) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify()

    @property
    def obj_ids(self) -> list[int]:
        with self._cond:
            return list(self._obj_ids)

    def take_stats(self) -> Stats:
        """The counters since the previous call (``dropped_total`` counts since the start)."""
        with self._cond:
            stats, self._stats = self._stats, Stats(dropped_total=self._stats.dropped_total)
        return stats

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after the current step; True when the thread has ended."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- the worker thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._frame is not None or self._requests)
                if self._stop:
                    break
                frame, self._frame = self._frame, None
                requests, self._requests = self._requests, []
            stamp = None if frame is None else header_stamp(frame[0].header)
            before = [r for r in requests if stamp is None or r.stamp != stamp]
            after = [r for r in requests if stamp is not None and r.stamp == stamp]
            for request in before:
                self._guarded(self._serve, request)
            if frame is not None:
                self._guarded(self._process, *frame)
            for request in self._waiting_ready() + after:
                self._guarded(self._serve, request)
        for request in self._waiting + self._requests:  # answer everyone, so no service caller hangs
            request.done(Reply(False, "the node is shutting down"))

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        """A bug in one step is logged with its traceback; the node keeps running."""
        try:
            step(*args)
        except Exception:  # noqa: BLE001 - the thread must survive anything a frame or prompt triggers
            self.log("error", f"unexpected error, the node keeps running:\n{traceback.format_exc()}")
            if args and isinstance(args[0], Request):
                args[0].done(Reply(False, "internal error, see the node's log"))

    def _waiting_ready(self) -> list[Request]:
        if self.tracker.frame_idx < 0:
            return []
        ready, self._waiting = self._waiting, []
        return ready

    def _process(self, msg: Any, received: float) -> None:
        t0 = time.perf_counter()
        try:
            rgb = image_to_rgb(msg, self.encoding)
        except Sam2rtError as e:
            self._refuse_frame(str(e))
            return
        size = rgb.shape[:2]
        if self._size is not None and size != self._size and self.tracker.obj_ids:
            self.log("warn", f"frame size changed from {self._size[1]}x{self._size[0]} to {size[1]}x{size[0]}; "
                             f"the stream restarts and objects {self.tracker.obj_ids} are dropped")
        if self.tracker.obj_ids and size == self._size:
            tracked = self.tracker.track(rgb, output="result", mask_dtype=bool)
        else:  # nothing to track: this frame starts the stream afresh, ready for prompts
            self.tracker.load_first_frame(rgb)
            tracked = None
        result = summarize(tracked, *size)
        done = time.perf_counter()
        timing = {"compute_ms": (done - t0) * 1e3, "latency_ms": (done - received) * 1e3}
        self._size, self._stamp = size, header_stamp(msg.header)
        self._set_objects(self.tracker.obj_ids)
        with self._cond:
            self._stats.frames += 1
            self._stats.latency_ms.append(timing["latency_ms"])
            self._stats.compute_ms.append(timing["compute_ms"])
            timing["dropped_frames"] = self._stats.dropped_total
        self.publish(msg.header, result, self.tracker.frame_idx, timing)

    def _refuse_frame(self, reason: str) -> None:
        with self._cond:
            self._stats.refused += 1
        now = time.monotonic()
        if reason != self._last_refusal[0] or now - self._last_refusal[1] > REFUSAL_LOG_S:
            self.log("error", f"frame refused: {reason}")
            self._last_refusal = (reason, now)

    def _serve(self, request: Request) -> None:
        if request.kind in ("click", "prompts") and self.tracker.frame_idx < 0:
            if len(self._waiting) >= MAX_WAITING:
                request.done(Reply(False, f"more than {MAX_WAITING} prompts wait for the first frame; refused"))
            else:
                self._waiting.append(request)
            return
        try:
            where = self._where(request)
            handler = {"click": self._click, "prompts": self._prompts, "remove": self._remove, "reset": self._reset}
            message = handler[request.kind](request)
        except Sam2rtError as e:
            request.done(Reply(False, str(e), self.tracker.obj_ids, self.tracker.frame_idx))
            return
        self._set_objects(self.tracker.obj_ids)
        request.done(Reply(True, f"{message}{where}", self.tracker.obj_ids, self.tracker.frame_idx))

    def _where(self, request: Request) -> str:
        """Say on which frame a prompt lands when it was meant for another one."""
        if request.kind not in ("click", "prompts"):
            return ""
        if request.stamp is not None and request.stamp != self._stamp:
            return (f" (stamped {request.stamp[0]}.{request.stamp[1]:09d}, not the current frame's stamp: "
                    "applied on the latest frame)")
        if request.frame is not None and request.frame != self.tracker.frame_idx:
            return f" (for frame {request.frame}, which is not current: applied on the latest frame)"
        return ""

    def _check_room(self, new_ids: set[int]) -> None:
        new_ids = new_ids - set(self.tracker.obj_ids)
        if len(self.tracker.obj_ids) + len(new_ids) > self.max_objects:
            raise Sam2rtError(f"adding objects {sorted(new_ids)} would track more than max_objects="
                              f"{self.max_objects} (tracking {self.tracker.obj_ids}); remove one first")

    def _click(self, request: Request) -> str:
        click = request.click
        obj_id = click.obj_id if click.obj_id is not None else max(self.tracker.obj_ids, default=0) + 1
        self._check_room({obj_id})
        # clicks accumulate on a frame (clear_old_points=False), as in an interactive annotator
        self.tracker.add_new_prompt(self.tracker.frame_idx, obj_id, points=[[click.x, click.y]],
                                    labels=[click.label], clear_old_points=False)
        sign = "+" if click.label else "-"
        return f"click ({click.x:g}, {click.y:g}, {sign}) on object {obj_id}, frame {self.tracker.frame_idx}"

    def _prompts(self, request: Request) -> str:
        prompts = request.prompts
        self._check_room({p.prompt.obj_id for p in prompts})
        check_fits(prompts, self._size[1], self._size[0])
        for item in prompts:
            self.tracker.add_new_prompt(self.tracker.frame_idx, item.prompt.obj_id, **prompt_kwargs(item.prompt))
        return f"prompts for objects {[p.prompt.obj_id for p in prompts]} on frame {self.tracker.frame_idx}"

    def _remove(self, request: Request) -> str:
        if self.tracker.frame_idx < 0 or request.obj_id not in self.tracker.obj_ids:
            raise Sam2rtError(f"object {request.obj_id} is not tracked (tracking {self.tracker.obj_ids})")
        self.tracker.remove_object(request.obj_id)
        return f"removed object {request.obj_id}"

    def _reset(self, request: Request) -> str:
        removed = self.tracker.obj_ids
        self.tracker.reset()
        return f"reset: removed objects {removed}"

    def _set_objects(self, obj_ids: list[int]) -> None:
        with self._cond:
            changed, self._obj_ids = obj_ids != self._obj_ids, list(obj_ids)
        if changed:
            self.objects_changed()
