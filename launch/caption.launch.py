"""Launch caption_node: captions for every camera, with the LiDAR/radar summary matched to each frame.

    ros2 launch blip_caption_ros caption.launch.py model:=/models/blip_bdd cameras:=front,left \
        image_transport:=compressed namespace:=perception

Empty override arguments keep the value from `params_file`. The Fast DDS large-data profile (64 MB shared memory)
is applied to the node; export FASTDDS_DEFAULT_PROFILES_FILE for the camera drivers too, so that they write whole
frames into shared memory (see config/fastdds_large_data.xml).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "blip_caption_ros"


def _caption_node(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context).strip()

    overrides = {name: arg(name) for name in ("model", "backend", "image_transport") if arg(name)}
    if arg("cameras"):
        overrides["cameras"] = [name.strip() for name in arg("cameras").split(",") if name.strip()]
    overrides["use_sim_time"] = arg("use_sim_time").lower() in ("true", "1", "yes")
    profile = arg("fastdds_profile")
    env = {"FASTDDS_DEFAULT_PROFILES_FILE": profile, "FASTRTPS_DEFAULT_PROFILES_FILE": profile} if profile else {}
    return [
        Node(
            package=PACKAGE,
            executable="caption_node",
            name="caption_node",
            namespace=arg("namespace"),
            parameters=[arg("params_file"), overrides],
            additional_env=env,
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"])
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file", default_value=PathJoinSubstitution([config, "caption.yaml"]),
            description="YAML file with caption_node parameters (every parameter is listed in config/caption.yaml)"),
        DeclareLaunchArgument(
            "model", default_value="",
            description="save_pretrained model directory or cached hub id; empty keeps the params_file value"),
        DeclareLaunchArgument(
            "backend", default_value="",
            description="inference backend (torch); empty keeps the params_file value"),
        DeclareLaunchArgument(
            "cameras", default_value="",
            description="comma-separated camera names, e.g. front,left (topics <cam>/image...); empty keeps "
                        "the params_file value"),
        DeclareLaunchArgument(
            "image_transport", default_value="",
            description="raw (<cam>/image) or compressed (<cam>/image/compressed); empty keeps the params_file value"),
        DeclareLaunchArgument(
            "namespace", default_value="",
            description="namespace for the node and all its relative topics"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false",
            description="use /clock (true when replaying a bag with --clock)"),
        DeclareLaunchArgument(
            "fastdds_profile", default_value=PathJoinSubstitution([config, "fastdds_large_data.xml"]),
            description="Fast DDS XML profile for large images (64 MB shared memory); empty to use the "
                        "environment's own"),
        OpaqueFunction(function=_caption_node),
    ])
