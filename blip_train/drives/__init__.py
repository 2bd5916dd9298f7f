"""Recorded drives, offline and at fleet scale.

- `bag_messages`: the ROS messages these tools write into drive bags (camera, clouds, GPS, IMU, speed).
- `bdd_to_bag` (`bdd-to-bag`): BDD100K videos and stills -> rosbag2, to replay through the node like a vehicle log.
- `synthetic_drive` (`blip-synth-drive`): a synthetic drive with camera, LiDAR, radar, GPS/IMU and speed that agree.
- `fleet` (`caption-bags`): caption many drives on Ray, each exactly as the vehicle's `caption-bag` would.
- `scenario_index` / `scenario_search` (`caption-index` / `caption-search`): the captions in DuckDB, searched for
  scenarios such as "night, rain, a pedestrian on the left".
"""
