"""``python -m sam2rt.ros2.play VIDEO``: publish a video file as ``sensor_msgs/Image`` (bgr8) at its frame rate.

For trying the node without a camera or a ROS distribution (whose ``image_publisher`` does the same).
Frames are published reliably (a best-effort subscriber such as the node still matches) and stamped with
the publisher's clock; ``--width`` scales them down, which also keeps large frames off lossy transports.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Sequence


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sam2rt.ros2.play", description=__doc__.splitlines()[0])
    p.add_argument("video", help="video file OpenCV can read (e.g. .mp4)")
    p.add_argument("--topic", default="image", help="sensor_msgs/Image topic (default: image)")
    p.add_argument("--fps", type=float, default=0.0, help="publishing rate (default: the video's)")
    p.add_argument("--width", type=int, default=0, help="scale frames to this width (default: as stored)")
    p.add_argument("--loop", action="store_true", help="start again at the end")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: no limit)")
    return p


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    import cv2
    import rclpy
    from rclpy.context import Context
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from sam2rt.ros2.convert import to_image

    args, ros_args = _parser().parse_known_args(argv)
    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        print(f"play: cannot open {args.video!r}; pass a video file OpenCV can decode", file=sys.stderr)
        return 2
    period = 1.0 / (args.fps or cap.get(cv2.CAP_PROP_FPS) or 30.0)
    signal.signal(signal.SIGTERM, _interrupt)  # before rclpy.init, whose handler chains to it
    context = Context()
    rclpy.init(args=ros_args, context=context)
    node = rclpy.create_node("sam2rt_play", context=context)
    pub = node.create_publisher(Image, args.topic,
                                QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    count, next_t = 0, time.monotonic()
    try:
        while context.ok() and (not args.max_frames or count < args.max_frames):
            ok, frame = cap.read()
            if not ok and args.loop:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = cap.read()
            if not ok:
                break
            if args.width:
                frame = cv2.resize(frame, (args.width, round(frame.shape[0] * args.width / frame.shape[1])),
                                   interpolation=cv2.INTER_AREA)
            pub.publish(to_image(Header(stamp=node.get_clock().now().to_msg(), frame_id="camera"), frame, "bgr8"))
            count += 1
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        cap.release()
        node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
    print(f"play: published {count} frames on {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
