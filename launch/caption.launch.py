"""Launch caption_node: captions for every camera, with the LiDAR/radar summary matched to each frame.

    ros2 launch blip_caption_ros caption.launch.py model:=/models/blip_bdd cameras:="[front, left]" \
        image_transport:=compressed max_rate_hz:=2.0 namespace:=perception

Every node argument left empty keeps the value from `params_file`. `fastdds_profile:=true` (the default) runs the node
with the Fast DDS large-data profile (64 MB shared memory), set in the variable the running distro reads; export the
same for the camera drivers (see config/fastdds_large_data.xml). The launch ends, non-zero, when the node exits with an
error (a missing model, bad parameters) unless `respawn:=true`. `ros2 launch ... --show-args` lists every argument.
The logic lives in blip_caption_ros.launch_args, which is tested without the launch packages.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from blip_caption_ros import launch_args

PACKAGE = "blip_caption_ros"


def _caption_node(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    config = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"]).perform(context)
    overrides = launch_args.parameter_overrides({name: arg(name) for name in launch_args.NODE_ARGUMENTS})
    overrides["use_sim_time"] = launch_args.parse_bool("use_sim_time", arg("use_sim_time"))
    respawn = launch_args.parse_bool("respawn", arg("respawn"))
    node = Node(
        package=PACKAGE,
        executable="caption_node",
        name="caption_node",
        namespace=arg("namespace"),
        parameters=[arg("params_file"), overrides],
        arguments=launch_args.ros_arguments(arg("log_level")),
        additional_env=launch_args.fastdds_profile_env(arg("fastdds_profile"), f"{config}/fastdds_large_data.xml"),
        respawn=respawn,
        respawn_delay=launch_args.parse_float("respawn_delay", arg("respawn_delay")),
        output="screen",
        emulate_tty=True,
    )
    actions = [node]
    if not respawn:
        actions.append(RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_end_on_node_error)))
    return actions


def _end_on_node_error(event, context):
    """A node that exits on its own with an error ends the launch with a non-zero status (an exception in launch
    is what makes `ros2 launch` return 1); a clean exit or one during shutdown (Ctrl-C) ends it normally."""
    if event.returncode != 0 and not context.is_shutdown:
        raise RuntimeError(f"caption_node exited with code {event.returncode}; see its log above")


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"])
    node_arguments = [
        DeclareLaunchArgument(name, default_value="", description=description)
        for name, description in launch_args.node_argument_descriptions().items()
    ]
    switches = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, (default, description) in launch_args.LAUNCH_SWITCHES.items()
    ]
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file", default_value=PathJoinSubstitution([config, "caption.yaml"]),
            description="YAML file with caption_node parameters (every parameter is listed in config/caption.yaml)"),
        *node_arguments,
        *switches,
        OpaqueFunction(function=_caption_node),
    ])
