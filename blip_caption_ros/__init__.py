"""Vehicle-side runtime: ROS-free captioning modules plus one thin rclpy node (node.py)."""
