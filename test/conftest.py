"""Session-wide test environment.

DDS must never leave loopback on a test machine, so discovery is pinned to localhost and every pytest process gets a
ROS domain id and ROS_HOME of its own, set here at import time: before any test (or child process it starts) can
import rclpy, and without relying on each test to remember.
"""

import os
import tempfile

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
# 0-101 stays below the kernel's ephemeral port range; spread concurrent runs by pid.
os.environ["ROS_DOMAIN_ID"] = str(10 + os.getpid() % 90)
os.environ["ROS_HOME"] = tempfile.mkdtemp(prefix="blip_caption_ros_test_home_")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
