"""What the launch files decide, without the `launch` package: argument names and descriptions, parsing the strings
`ros2 launch` hands over into typed node parameters, and the Fast DDS profile variable of the running distro.

launch and launch_ros come from a ROS install and cannot be installed from PyPI, so the launch files stay thin and
this module carries their logic where plain pytest can test it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

import yaml

from .params import NodeParams

#: Node parameters settable as launch arguments (`name:=value`); an empty value keeps the params_file value.
NODE_ARGUMENTS = (
    "model", "backend", "device", "precision", "prompt", "max_new_tokens", "num_beams", "cameras", "image_transport",
    "lidar_topic", "radar_topic", "max_sensor_offset_ms", "max_rate_hz", "overlay",
)
#: Launch-only switches: name -> (default, description).
LAUNCH_SWITCHES = {
    "namespace": ("", "namespace for the node and all its relative topics"),
    "use_sim_time": ("false", "true: the node follows /clock (a bag replayed with --clock)"),
    "fastdds_profile": ("true", "true: run the node with config/fastdds_large_data.xml (64 MB shared memory for "
                                "large images); false: keep the environment's Fast DDS settings"),
    "log_level": ("info", "node log level: debug, info, warn, error or fatal"),
    "respawn": ("false", "true: restart the node when it exits (after respawn_delay); false: the launch ends "
                         "when the node exits with an error"),
    "respawn_delay": ("2.0", "seconds before a respawn"),
    "managed": ("false", "true: start the lifecycle (managed) node, which waits unconfigured for a lifecycle manager "
                         "(ros2 lifecycle set, Nav2's lifecycle manager) unless autostart:=true"),
    "autostart": ("false", "with managed:=true: configure and activate the node as soon as its process starts, as "
                           "Nav2's lifecycle manager does with autostart"),
}
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
PLAYERS = ("bag-replay", "ros2bag")
#: Distros whose Fast DDS (2.x) reads FASTRTPS_DEFAULT_PROFILES_FILE; later ones (Fast DDS 3) read
#: FASTDDS_DEFAULT_PROFILES_FILE and warn that the FASTRTPS_ name is deprecated.
FASTRTPS_DISTROS = ("humble", "iron", "jazzy")
EMPTY_STRING = ("''", '""')  # how a user asks for an empty string, since an empty argument means "keep"

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class LaunchArgumentError(ValueError):
    """A launch argument whose value cannot be used; the message names the argument."""


def node_argument_descriptions() -> dict[str, str]:
    """name -> description of every node parameter in NODE_ARGUMENTS, taken from params.NodeParams."""
    described = {name: description for name, _, description, _ in NodeParams.specs()}
    kinds = {spec.name: spec.type for spec in fields(NodeParams)}
    hints = {"cameras": "; as front,left or the YAML list [front, left]"}

    def suffix(name: str) -> str:
        empty = ", '' sets the empty string" if kinds[name] == "str" else ""
        return f"{hints.get(name, '')} (launch argument: empty keeps the params_file value{empty})"

    return {name: described[name] + suffix(name) for name in NODE_ARGUMENTS}


def parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise LaunchArgumentError(f"{name}:={text!r} is not a boolean; use true or false")


def parse_float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise LaunchArgumentError(f"{name}:={text!r} is not a number") from None


def parse_cameras(text: str) -> list[str]:
    """Camera names from `front,left`, `front` or the YAML list `[front, left]` (ros2 launch passes both as text)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            names = yaml.safe_load(stripped)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "unparsable"
            raise LaunchArgumentError(f"cameras:={text!r} is not a YAML list ({problem}); use [front, left] or "
                                      "front,left") from None
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise LaunchArgumentError(f"cameras:={text!r}: a list must hold camera names, e.g. [front, left]")
    else:
        names = stripped.split(",")
    names = [name.strip() for name in names]
    if not names or not all(names):
        raise LaunchArgumentError(f"cameras:={text!r} has an empty camera name")
    return names


def parameter_overrides(values: dict[str, str]) -> dict[str, object]:
    """Typed node parameters from launch argument strings; empty strings are left out (params_file keeps them).

    Types follow NodeParams, so `max_sensor_offset_ms:=100` becomes the double 100.0 the node declares.
    """
    types = {spec.name: spec.type for spec in fields(NodeParams)}
    overrides: dict[str, object] = {}
    for name, text in values.items():
        if name not in types:
            raise LaunchArgumentError(f"{name} is not a caption_node parameter")
        text = text.strip()
        if not text:
            continue
        kind = types[name]
        try:
            if kind == "bool":
                overrides[name] = parse_bool(name, text)
            elif kind == "int":
                overrides[name] = int(text)
            elif kind == "float":
                overrides[name] = float(text)
            elif name == "cameras":
                overrides[name] = parse_cameras(text)
            else:
                overrides[name] = "" if text in EMPTY_STRING else text
        except ValueError as exc:
            if isinstance(exc, LaunchArgumentError):
                raise
            raise LaunchArgumentError(f"{name}:={text!r} is not a{'n' if kind == 'int' else ''} {kind}") from None
    return overrides


@dataclass(frozen=True)
class LifecycleStep:
    """One transition the launch requests: `transition` (a lifecycle_msgs/Transition label), the transition state
    it passes through and the state it ends in (how the launch recognises that the step is done)."""

    transition: str
    through: str
    goal: str


AUTOSTART = (LifecycleStep("configure", "configuring", "inactive"), LifecycleStep("activate", "activating", "active"))


def lifecycle_steps(managed: str, autostart: str) -> tuple[LifecycleStep, ...]:
    """What the launch does with a managed node: nothing (a lifecycle manager drives it), or AUTOSTART, each step
    requested when the previous one has ended in its goal state (the first when the process starts)."""
    is_managed, auto = parse_bool("managed", managed), parse_bool("autostart", autostart)
    if auto and not is_managed:
        raise LaunchArgumentError("autostart:=true drives the lifecycle of a managed node: add managed:=true")
    return AUTOSTART if auto else ()


def node_arguments(managed: str, log_level: str) -> list[str]:
    """The executable's arguments (launch_ros' `arguments=`): `--managed` for the lifecycle node, then ROS's."""
    return (["--managed"] if parse_bool("managed", managed) else []) + ros_arguments(log_level)


def ros_arguments(log_level: str) -> list[str]:
    """Arguments after `--ros-args` for the node (as launch_ros' `arguments=`, which every distro accepts)."""
    level = log_level.strip().lower()
    if level not in LOG_LEVELS:
        raise LaunchArgumentError(f"log_level:={log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    return ["--ros-args", "--log-level", level]


def fastdds_profile_variable(distro: str | None = None) -> str:
    """The environment variable the running distro's Fast DDS reads its XML profile from.

    `distro` defaults to ROS_DISTRO (set by every ROS install's setup script); without it the newest naming is used
    (the ROS wheels on PyPI are Kilted by default).
    """
    distro = (os.environ.get("ROS_DISTRO", "") if distro is None else distro).strip().lower()
    return "FASTRTPS_DEFAULT_PROFILES_FILE" if distro in FASTRTPS_DISTROS else "FASTDDS_DEFAULT_PROFILES_FILE"


def fastdds_profile_env(enabled: str, profile: str, distro: str | None = None) -> dict[str, str]:
    """The node's additional environment for `fastdds_profile:=true|false`: one variable, the one the distro reads."""
    if not parse_bool("fastdds_profile", enabled):
        return {}
    if not os.path.isfile(profile):
        raise LaunchArgumentError(f"fastdds_profile: profile file {profile!r} does not exist")
    return {fastdds_profile_variable(distro): profile}


def configured_value(name: str, overrides: dict[str, object], params_file: str, node_name: str = "caption_node"):
    """What the node will use for `name`: the launch override, else the params file (`/**` or node-name keys),
    else the NodeParams default."""
    if name in overrides:
        return overrides[name]
    try:
        with open(params_file) as stream:
            document = yaml.safe_load(stream) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LaunchArgumentError(f"params_file:={params_file!r} cannot be read: {exc}") from None
    for key in ("/**", node_name, f"/{node_name}"):
        section = document.get(key, {}) if isinstance(document, dict) else {}
        if isinstance(section, dict) and name in section.get("ros__parameters", {}):
            return section["ros__parameters"][name]
    default = {spec.name: spec.default for spec in fields(NodeParams)}[name]
    return list(default) if isinstance(default, tuple) else default


def image_topics(cameras, image_transport: str, namespace: str = "") -> list[str]:
    """The absolute image topics the node subscribes (what a bag player should wait for)."""
    suffix = "image/compressed" if image_transport == "compressed" else "image"
    prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return [f"{prefix}/{camera}/{suffix}" for camera in cameras]


def ros2bag_missing() -> str | None:
    """Why `ros2 bag play` cannot run here (no `ros2` on PATH, or ros2cli without rosbag2's `bag` verb), else None."""
    import importlib.util
    import shutil

    if shutil.which("ros2") is None:
        return "player:=ros2bag needs `ros2 bag` (a ROS install with rosbag2): no `ros2` on PATH; use bag-replay"
    if importlib.util.find_spec("ros2bag") is None:
        return "player:=ros2bag needs `ros2 bag`: ros2cli is installed without rosbag2 (ros2bag); use bag-replay"
    return None


def player_command(player: str, bag: str, rate: str, loop: str, start_offset: str,
                   wait_for: list[str]) -> list[str]:
    """The bag player's command line: `ros2 bag play` (a ROS install) or the package's `bag-replay`.

    bag-replay first waits until the node subscribes `wait_for`, so no frame is played before the node listens;
    ros2 bag play has no such option and is simply started after the node.
    """
    if player not in PLAYERS:
        raise LaunchArgumentError(f"player:={player!r} is not one of {', '.join(PLAYERS)}")
    if not bag.strip():
        raise LaunchArgumentError("bag:= is empty; give a rosbag2 directory or .mcap file")
    if parse_float("rate", rate) <= 0:
        raise LaunchArgumentError(f"rate:={rate!r} must be > 0")
    if player == "ros2bag":
        cmd = ["ros2", "bag", "play", bag, "--clock", "--rate", rate]
    else:
        cmd = ["bag-replay", bag, "--clock", "--rate", rate]
        if wait_for:
            cmd += ["--wait-for", *wait_for]
    if parse_bool("loop", loop):
        cmd.append("--loop")
    if start_offset.strip():
        parse_float("start_offset", start_offset)
        cmd += ["--start-offset", start_offset.strip()]
    return cmd
