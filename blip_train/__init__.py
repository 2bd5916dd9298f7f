"""Workstation side: BDD100K labels -> captions, BLIP fine-tuning, evaluation and export. Imports no rclpy."""
