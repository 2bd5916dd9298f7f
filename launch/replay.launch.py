"""Replay a recorded drive through caption_node: a bag player publishing /clock + the node on simulated time.

    ros2 launch blip_caption_ros replay.launch.py bag:=drives/rainy_night model:=/models/blip_bdd rate:=0.5
    ros2 launch blip_caption_ros replay.launch.py bag:=drive.mcap model:=/models/blip_bdd player:=ros2bag

`player:=bag-replay` (default) is the package's player, which works without rosbag2 and starts playing once the node
subscribes its cameras; `player:=ros2bag` runs `ros2 bag play` from a ROS install. The launch ends when the player
exits (non-zero when it failed) and when the node exits with an error. Every caption.launch.py argument applies too
(cameras, max_rate_hz, fastdds_profile, ...); `--show-args` lists them.
"""


from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    RegisterEventHandler,
    Shutdown,
)
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from blip_caption_ros import launch_args

PACKAGE = "blip_caption_ros"


def _player(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    overrides = launch_args.parameter_overrides({name: arg(name) for name in ("cameras", "image_transport")})
    cameras = launch_args.configured_value("cameras", overrides, arg("params_file"))
    transport = launch_args.configured_value("image_transport", overrides, arg("params_file"))
    cmd = launch_args.player_command(arg("player"), arg("bag"), arg("rate"), arg("loop"), arg("start_offset"),
                                     launch_args.image_topics(cameras, transport, arg("namespace")))
    config = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"]).perform(context)
    env = launch_args.fastdds_profile_env(arg("fastdds_profile"), f"{config}/fastdds_large_data.xml")
    if cmd[0] == "ros2":
        missing = launch_args.ros2bag_missing()
        if missing:
            raise launch_args.LaunchArgumentError(missing)
        player = ExecuteProcess(cmd=cmd, name="ros2_bag_play", additional_env=env, output="screen")
    else:
        player = Node(package=PACKAGE, executable=cmd[0], arguments=cmd[1:], additional_env=env, output="screen")
    return [player, RegisterEventHandler(OnProcessExit(target_action=player, on_exit=_end_with_player))]


def _end_with_player(event, context):
    """The bag is over: end the launch (the node gets SIGINT); a failed player makes `ros2 launch` return 1."""
    if event.returncode != 0 and not context.is_shutdown:
        raise RuntimeError(f"the bag player exited with code {event.returncode}; see its log above")
    return [Shutdown(reason="the bag player finished")]


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "caption.launch.py"])),
        launch_arguments={"use_sim_time": "true"}.items(),
    )
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 to replay (directory or .mcap), e.g. from bdd-to-bag"),
        DeclareLaunchArgument("player", default_value="bag-replay",
                              description="bag-replay (the package's player, no rosbag2 needed) or ros2bag "
                                          "(`ros2 bag play` of a ROS install)"),
        DeclareLaunchArgument("rate", default_value="1.0",
                              description="playback speed factor; below 1.0 when the model is slower than the bag"),
        DeclareLaunchArgument("loop", default_value="false",
                              description="restart the bag at its end (true/false); the launch then runs until "
                                          "Ctrl-C"),
        DeclareLaunchArgument("start_offset", default_value="",
                              description="seconds of the bag to skip at the start; empty plays from the beginning"),
        DeclareLaunchArgument(
            "params_file", default_value=PathJoinSubstitution([share, "config", "caption.yaml"]),
            description="YAML file with caption_node parameters"),
        DeclareLaunchArgument("image_transport", default_value="compressed",
                              description="raw or compressed: how the bag stores images (bdd-to-bag writes jpeg)"),
        node,
        OpaqueFunction(function=_player),
    ])
