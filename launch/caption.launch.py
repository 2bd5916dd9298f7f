"""Launch caption_node: captions for every camera, with the LiDAR/radar summary matched to each frame.

    ros2 launch blip_caption_ros caption.launch.py model:=/models/blip_bdd cameras:="[front, left]" \
        image_transport:=compressed max_rate_hz:=2.0 namespace:=perception

    ros2 launch blip_caption_ros caption.launch.py managed:=true autostart:=true   # lifecycle node, driven to active

Every node argument left empty keeps the value from `params_file`. `managed:=true` starts the lifecycle node
(`caption_node --managed`), which waits unconfigured for a lifecycle manager; `autostart:=true` configures and
activates it through launch_ros' lifecycle events (ChangeState when the process starts, then on each
OnStateTransition), so one command still gives a captioning node. `fastdds_profile:=true` (the default) runs the node
with the Fast DDS large-data profile (64 MB shared memory), set in the variable the running distro reads; export the
same for the camera drivers (see config/fastdds_large_data.xml). The launch ends, non-zero, when the node exits with an
error (a missing model, bad parameters) unless `respawn:=true`. `ros2 launch ... --show-args` lists every argument.
The logic lives in blip_caption_ros.launch_args, which is tested without the launch packages.
"""

from itertools import pairwise

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit, OnProcessStart
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

from blip_caption_ros import launch_args

PACKAGE = "blip_caption_ros"


def _caption_node(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    config = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"]).perform(context)
    overrides = launch_args.parameter_overrides({name: arg(name) for name in launch_args.NODE_ARGUMENTS})
    overrides["use_sim_time"] = launch_args.parse_bool("use_sim_time", arg("use_sim_time"))
    respawn = launch_args.parse_bool("respawn", arg("respawn"))
    steps = launch_args.lifecycle_steps(arg("managed"), arg("autostart"))
    node_class = LifecycleNode if launch_args.parse_bool("managed", arg("managed")) else Node
    node = node_class(
        package=PACKAGE,
        executable="caption_node",
        name="caption_node",
        namespace=arg("namespace"),
        parameters=[arg("params_file"), overrides],
        arguments=launch_args.node_arguments(arg("managed"), arg("log_level")),
        additional_env=launch_args.fastdds_profile_env(arg("fastdds_profile"), f"{config}/fastdds_large_data.xml"),
        respawn=respawn,
        respawn_delay=launch_args.parse_float("respawn_delay", arg("respawn_delay")),
        output="screen",
        emulate_tty=True,
    )
    actions = [node, *_autostart(node, steps)]
    if not respawn:
        actions.append(RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_end_on_node_error)))
    return actions


def _autostart(node, steps):
    """The first lifecycle step when the process starts, each next one when the previous has reached its goal."""
    def request(step):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                           transition_id=getattr(Transition, f"TRANSITION_{step.transition.upper()}")))

    if not steps:
        return []
    handlers = [RegisterEventHandler(OnProcessStart(target_action=node, on_start=[request(steps[0])]))]
    for done, step in pairwise(steps):
        handlers.append(RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, start_state=done.through, goal_state=done.goal, entities=[request(step)])))
    return handlers


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
