"""SAM 2 live tracking as a ROS 2 node (optional: needs rclpy; see docs/ros2.md).

Importing this package imports no rclpy: the node lives in :mod:`sam2rt.ros2.node` and is started by
``sam2rt ros2 --model DIR`` or ``python -m sam2rt.ros2 --ros-args -p model:=DIR`` (launch files).
"""
