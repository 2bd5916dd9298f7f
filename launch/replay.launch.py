"""Replay a recorded drive through caption_node: `ros2 bag play --clock` + the node on simulated time.

    ros2 launch blip_caption_ros replay.launch.py bag:=drives/rainy_night model:=/models/blip_bdd \
        image_transport:=compressed rate:=0.5

The node runs with use_sim_time, so its stamps, sensor matching and diagnostics follow the bag's clock. On a machine
without ros2cli, run the node and `bag-replay BAG --clock` instead (see the README).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "blip_caption_ros"


def _bag_play(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context).strip()

    cmd = ["ros2", "bag", "play", arg("bag"), "--clock", "--rate", arg("rate")]
    if arg("loop").lower() in ("true", "1", "yes"):
        cmd.append("--loop")
    if arg("start_offset"):
        cmd += ["--start-offset", arg("start_offset")]
    return [ExecuteProcess(cmd=cmd, output="screen")]


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "caption.launch.py"])),
        launch_arguments={
            "params_file": LaunchConfiguration("params_file"),
            "model": LaunchConfiguration("model"),
            "backend": LaunchConfiguration("backend"),
            "cameras": LaunchConfiguration("cameras"),
            "image_transport": LaunchConfiguration("image_transport"),
            "namespace": LaunchConfiguration("namespace"),
            "use_sim_time": "true",
        }.items(),
    )
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 to replay (directory or .mcap), e.g. from bdd-to-bag"),
        DeclareLaunchArgument("rate", default_value="1.0",
                              description="playback speed factor; below 1.0 when the model is slower than the bag"),
        DeclareLaunchArgument("loop", default_value="false", description="restart the bag at its end (true/false)"),
        DeclareLaunchArgument("start_offset", default_value="",
                              description="seconds of the bag to skip at the start; empty plays from the beginning"),
        DeclareLaunchArgument(
            "params_file", default_value=PathJoinSubstitution([share, "config", "caption.yaml"]),
            description="YAML file with caption_node parameters"),
        DeclareLaunchArgument("model", default_value="",
                              description="save_pretrained model directory or cached hub id; empty keeps params_file"),
        DeclareLaunchArgument("backend", default_value="",
                              description="inference backend; empty keeps the params_file value"),
        DeclareLaunchArgument("cameras", default_value="",
                              description="comma-separated camera names in the bag; empty keeps the params_file value"),
        DeclareLaunchArgument("image_transport", default_value="compressed",
                              description="raw or compressed: how the bag stores images (bdd-to-bag writes jpeg)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node; the bag's topics must resolve inside it"),
        node,
        OpaqueFunction(function=_bag_play),
    ])
