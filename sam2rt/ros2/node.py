"""``Sam2rtNode``: SAM 2 live tracking as a ROS 2 node (rclpy; standard message and service types only).

Topics, services and parameters are documented in docs/ros2.md. Threads: a MultiThreadedExecutor runs the
callbacks in two groups (frames, clicks, JSON prompts and diagnostics; services and the remove-service
bookkeeping), and a :class:`~sam2rt.ros2.worker.TrackerWorker` thread owns the tracker. Frame and prompt
callbacks only hand over and return; a service callback waits for the worker's answer in its own group.
Only rclpy and the message packages are imported (no wheel-specific module), so the node runs on the rclpy
of a ROS distribution as well as on the pip wheels.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any, Sequence

import numpy as np
import rclpy
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest
from sam2rt.ros2.convert import CHANNELS, mono_image
from sam2rt.ros2.prompts import parse_click, parse_json_prompts
from sam2rt.ros2.results import FrameObjects, summary_dict
from sam2rt.ros2.worker import Reply, Request, TrackerWorker, header_stamp

NODE_NAME = "sam2rt"
SERVICE_TIMEOUT_S = 60.0  # a service waits this long for the worker (a TensorRT warm-up can take seconds)
RELIABLE_DEPTH = 10
# a mask topic appears with its object and gets its first message at once, before subscribers can have
# matched: transient-local keeps the last few for them (plain volatile subscribers are compatible too)
MASK_QOS = QoSProfile(depth=RELIABLE_DEPTH, durability=DurabilityPolicy.TRANSIENT_LOCAL)
PARAMETERS: dict[str, tuple[Any, str]] = {
    "model": ("", "exported model directory (sam2rt export); required"),
    "backend": ("ort", "ort (ONNX Runtime CPU), ort-gpu (onnxruntime-gpu) or trt (TensorRT engines)"),
    "engine_dir": ("", "TensorRT engine directory; empty: MODEL/engines"),
    "threads": (0, "inference threads; 0: the backend's default"),
    "memory": ("sam2", "the tracker's memory: sam2 (official) or samurai (SAMURAI's motion-aware memory)"),
    "samurai": ("", "SAMURAI's parameters as JSON, e.g. {\"kf_weight\": 0.2} (fields in docs/tracker.md); empty: "
                    "the model's published config"),
    "input_encoding": ("", "treat every frame as this encoding (rgb8, bgr8, mono8); empty: the message's"),
    "max_objects": (0, "prompts that would track more objects are refused; 0: the model's bank capacity"),
    "publish_masks": (False, "also publish one mono8 mask (0/255) per object on ~/masks/obj_<id>"),
    "click_obj_id": (0, "object of clicks whose header.frame_id is not an integer; 0: a new object per click"),
    "image_topic": ("image", "input sensor_msgs/Image"),
    "image_qos": ("sensor_data", "sensor_data (best effort, as cameras publish) or reliable (for large frames over "
                                 "a lossy transport, with a reliable publisher)"),
    "click_topic": ("", "geometry_msgs/PointStamped clicks; empty: <image_topic>_mouse_left (rqt_image_view)"),
    "prompt_topic": ("~/prompts", "std_msgs/String JSON prompts (the prompts-file schema, frame optional)"),
    "labels_topic": ("~/labels", "output label image, mono8 (mono16 above 255 objects)"),
    "objects_topic": ("~/objects", "output per-frame JSON summary"),
    "prompt_results_topic": ("~/prompt_results", "output JSON answer to every click and JSON prompt"),
    "diagnostics_period": (5.0, "seconds between diagnostics log lines (FPS, latency, dropped frames)"),
}


class Sam2rtNode(Node):
    """Tracks the objects prompted by clicks/JSON on every frame of ``image_topic``.

    overrides: parameter values that replace the defaults (the CLI's flags); ``--ros-args -p`` still apply.
    Raises Sam2rtError when the model cannot be loaded.
    """

    def __init__(self, overrides: dict[str, Any] | None = None, **kwargs: Any) -> None:
        over = [Parameter(k, value=v) for k, v in (overrides or {}).items()]
        super().__init__(NODE_NAME, parameter_overrides=over, **kwargs)
        p = self._read_parameters()
        from sam2rt.runtime.stream import StreamTracker  # onnxruntime: only once the node really starts

        tracker = StreamTracker(p["model"], backend=p["backend"], threads=p["threads"],
                                engine_dir=p["engine_dir"] or None, **_memory(p))
        self._publish_masks = bool(p["publish_masks"])
        self._mask_pubs: dict[int, Any] = {}  # obj_id -> publisher; touched by the worker thread only
        self._remove_srvs: dict[int, Any] = {}  # obj_id -> service; touched in the services group only
        self._io_group, self._srv_group = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        self._labels_pub = self.create_publisher(Image, p["labels_topic"], RELIABLE_DEPTH)
        self._objects_pub = self.create_publisher(String, p["objects_topic"], RELIABLE_DEPTH)
        self._results_pub = self.create_publisher(String, p["prompt_results_topic"], RELIABLE_DEPTH)
        self._sync = self.create_guard_condition(self._sync_remove_services, callback_group=self._srv_group)
        max_objects = p["max_objects"] or load_manifest(p["model"]).bank.max_objects
        self.worker = TrackerWorker(tracker, self._publish, self._log, self._sync.trigger,
                                    max_objects=max_objects, encoding=p["input_encoding"])
        self._subscribe(p)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=self._srv_group)
        self._last_diag = time.monotonic()
        self.create_timer(float(p["diagnostics_period"]), self._diagnostics, callback_group=self._io_group)
        self.worker.start()

    def _read_parameters(self) -> dict[str, Any]:
        """Declare every parameter and check the values (before the model is loaded)."""
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        if not p["model"]:
            raise Sam2rtError("parameter 'model' is empty; pass --ros-args -p model:=/path/to/exported_model")
        if p["input_encoding"] not in ("", *CHANNELS):
            raise Sam2rtError(f"parameter input_encoding is {p['input_encoding']!r}; use rgb8, bgr8, mono8 or ''")
        _image_qos(p["image_qos"])
        return p

    def _subscribe(self, p: dict[str, Any]) -> None:
        click_topic = p["click_topic"] or f"{p['image_topic']}_mouse_left"
        self.create_subscription(Image, p["image_topic"], self.worker.put_frame, _image_qos(p["image_qos"]),
                                 callback_group=self._io_group)
        self.create_subscription(PointStamped, click_topic, self._on_click, RELIABLE_DEPTH,
                                 callback_group=self._io_group)
        self.create_subscription(String, p["prompt_topic"], self._on_prompts, RELIABLE_DEPTH,
                                 callback_group=self._io_group)
        self.get_logger().info(f"tracking {self.resolve_topic_name(p['image_topic'])} with {p['model']} "
                               f"({p['backend']}); clicks on {self.resolve_topic_name(click_topic)}")

    def close(self) -> None:
        """Stop the tracking thread (call before destroy_node)."""
        if not self.worker.stop():
            self.get_logger().warning("the tracking thread did not stop within 10 s")

    # ---- inputs (executor threads): hand over and return ---------------------------------------------
    def _on_click(self, msg: PointStamped) -> None:
        default = int(self.get_parameter("click_obj_id").value)
        try:
            click = parse_click(msg.point.x, msg.point.y, msg.point.z, msg.header.frame_id, default)
        except Sam2rtError as e:
            self._answer("click", Reply(False, str(e)))
            return
        self.worker.submit(Request("click", lambda r: self._answer("click", r), stamp=header_stamp(msg.header),
                                   click=click))

    def _on_prompts(self, msg: String) -> None:
        try:
            prompts = parse_json_prompts(msg.data)
        except Sam2rtError as e:
            self._answer("prompts", Reply(False, str(e)))
            return
        frames = {p.frame for p in prompts if p.frame is not None}
        self.worker.submit(Request("prompts", lambda r: self._answer("prompts", r), prompts=prompts,
                                   frame=min(frames) if frames else None))

    def _answer(self, source: str, reply: Reply) -> None:
        """Log a prompt's outcome and publish it as JSON on the prompt-results topic."""
        if reply.ok:
            self.get_logger().info(f"{reply.message}; tracking {reply.obj_ids}")
        else:
            self.get_logger().error(f"{source} refused: {reply.message}")
        answer = {"source": source, "ok": reply.ok, "message": reply.message, "obj_ids": reply.obj_ids,
                  "frame_idx": reply.frame_idx}
        self._results_pub.publish(String(data=json.dumps(answer)))

    # ---- services (services group) -----------------------------------------------------------------
    def _call(self, kind: str, obj_id: int | None = None) -> Reply:
        answered, box = threading.Event(), []
        self.worker.submit(Request(kind, lambda r: (box.append(r), answered.set()), obj_id=obj_id))
        if not answered.wait(SERVICE_TIMEOUT_S):
            return Reply(False, f"no answer from the tracking thread within {SERVICE_TIMEOUT_S:g} s")
        return box[0]

    def _respond(self, reply: Reply, response: Trigger.Response) -> Trigger.Response:
        (self.get_logger().info if reply.ok else self.get_logger().error)(f"{reply.message}; tracking {reply.obj_ids}")
        response.success = reply.ok
        response.message = json.dumps({"message": reply.message, "obj_ids": reply.obj_ids,
                                       "frame_idx": reply.frame_idx})
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._respond(self._call("reset"), response)

    def _sync_remove_services(self) -> None:
        """One ``~/remove/obj_<id>`` Trigger service per tracked object (std_srvs has no service with an id)."""
        ids = set(self.worker.obj_ids)
        for obj_id in set(self._remove_srvs) - ids:
            self.destroy_service(self._remove_srvs.pop(obj_id))
        for obj_id in ids - set(self._remove_srvs):
            self._remove_srvs[obj_id] = self.create_service(
                Trigger, f"~/remove/obj_{obj_id}",
                lambda request, response, obj_id=obj_id: self._respond(self._call("remove", obj_id), response),
                callback_group=self._srv_group)

    # ---- outputs (worker thread) -------------------------------------------------------------------
    def _publish(self, header: Any, result: FrameObjects, frame_idx: int, timing: dict[str, float]) -> None:
        summary = {"stamp": {"sec": header.stamp.sec, "nanosec": header.stamp.nanosec},
                   "frame_id": header.frame_id, **summary_dict(result, frame_idx, timing)}
        if self._publish_masks:
            self._publish_object_masks(header, result)
        self._objects_pub.publish(String(data=json.dumps(summary)))
        self._labels_pub.publish(mono_image(header, result.labels))

    def _publish_object_masks(self, header: Any, result: FrameObjects) -> None:
        for obj_id in set(self._mask_pubs) - set(result.obj_ids):
            self.destroy_publisher(self._mask_pubs.pop(obj_id))
        for k, obj_id in enumerate(result.obj_ids):
            if obj_id not in self._mask_pubs:
                self._mask_pubs[obj_id] = self.create_publisher(Image, f"~/masks/obj_{obj_id}", MASK_QOS)
            self._mask_pubs[obj_id].publish(mono_image(header, result.masks[k].astype(np.uint8) * 255))

    def _log(self, level: str, text: str) -> None:
        {"info": self.get_logger().info, "warn": self.get_logger().warning}.get(level, self.get_logger().error)(text)

    def _diagnostics(self) -> None:
        now, stats = time.monotonic(), self.worker.take_stats()
        elapsed, self._last_diag = max(now - self._last_diag, 1e-9), now
        lat = f"{np.mean(stats.latency_ms):.0f}/{np.max(stats.latency_ms):.0f} ms" if stats.frames else "-"
        comp = f"{np.mean(stats.compute_ms):.0f} ms" if stats.frames else "-"
        self.get_logger().info(f"{stats.frames / elapsed:.1f} FPS, latency mean/max {lat}, compute {comp}, "
                               f"dropped {stats.dropped} ({stats.dropped_total} in total), refused {stats.refused}, "
                               f"objects {self.worker.obj_ids}")


def _memory(p: dict[str, Any]) -> dict[str, Any]:
    """StreamTracker's memory= / samurai= from the memory and samurai parameters."""
    import json

    from sam2rt.runtime.memory_policy import SamuraiConfig

    if not p["samurai"]:
        return {"memory": p["memory"]}
    try:
        fields = json.loads(p["samurai"])
    except json.JSONDecodeError as e:
        raise Sam2rtError(f"parameter samurai is not JSON ({e}); pass an object such as {{\"kf_weight\": 0.2}}") from e
    if not isinstance(fields, dict) or p["memory"] != "samurai":
        raise Sam2rtError("parameter samurai takes a JSON object of SAMURAI's parameters, with memory:=samurai")
    return {"memory": "samurai", "samurai": SamuraiConfig.for_model(load_manifest(p["model"]).model_name, **fields)}


def _image_qos(name: str) -> QoSProfile:
    """The input's QoS: sensor data (best effort, keep last 5) or the same depth, reliable."""
    if name not in ("sensor_data", "reliable"):
        raise Sam2rtError(f"parameter image_qos is {name!r}; use sensor_data or reliable")
    qos = QoSProfile(depth=qos_profile_sensor_data.depth, reliability=qos_profile_sensor_data.reliability,
                     durability=qos_profile_sensor_data.durability)
    if name == "reliable":
        qos.reliability = ReliabilityPolicy.RELIABLE
    return qos


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(args: Sequence[str] | None = None, overrides: dict[str, Any] | None = None) -> int:
    """Run the node until Ctrl-C / SIGTERM / ROS shutdown. args: ROS arguments (``--ros-args ...``)."""
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (systemd, docker stop, launch's escalation) stops as cleanly as Ctrl-C; set before rclpy.init,
        # whose own handler chains to it
        signal.signal(signal.SIGTERM, _interrupt)
    context = Context()
    rclpy.init(args=list(args) if args is not None else None, context=context)
    node, executor = None, MultiThreadedExecutor(num_threads=2, context=context)
    try:
        node = Sam2rtNode(overrides, context=context)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
    return 0
