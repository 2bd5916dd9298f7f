"""blip_caption_ros.launch_args: what the launch files decide, tested without the launch packages (not on PyPI),
and the Fast DDS profile variable checked against the real Fast DDS of the installed distro."""

import os
import subprocess
import sys

import pytest
import yaml

from blip_caption_ros import launch_args
from blip_caption_ros.launch_args import LaunchArgumentError
from blip_caption_ros.params import NodeParams
from test.ros_helpers import CONFIG_YAML
from test.support import REPO

FASTDDS_XML = REPO / "config" / "fastdds_large_data.xml"


@pytest.mark.parametrize("text, expected", [
    ("front", ["front"]),
    ("front,left", ["front", "left"]),
    (" front , left ", ["front", "left"]),
    ("[front, left]", ["front", "left"]),
    ("['front', 'rear/wide']", ["front", "rear/wide"]),
])
def test_cameras_accept_the_comma_and_the_yaml_list_forms(text, expected):
    assert launch_args.parse_cameras(text) == expected
    NodeParams(cameras=tuple(expected))  # and the node accepts what comes out


@pytest.mark.parametrize("text", ["[front, left", "front,,left", "[front, [left]]", "[]"])
def test_malformed_cameras_are_refused_by_name(text):
    with pytest.raises(LaunchArgumentError, match="cameras"):
        launch_args.parse_cameras(text)


def test_overrides_are_typed_like_the_node_parameters_and_empty_keeps_the_params_file():
    values = {name: "" for name in launch_args.NODE_ARGUMENTS}
    assert launch_args.parameter_overrides(values) == {}
    values.update(max_rate_hz="1", max_sensor_offset_ms="100", max_new_tokens="12", num_beams="3", overlay="False",
                  cameras="[front, left]", prompt="a photo of", lidar_topic="''", device="cuda:0")
    overrides = launch_args.parameter_overrides(values)
    assert overrides == {"max_rate_hz": 1.0, "max_sensor_offset_ms": 100.0, "max_new_tokens": 12, "num_beams": 3,
                         "overlay": False, "cameras": ["front", "left"], "prompt": "a photo of", "lidar_topic": "",
                         "device": "cuda:0"}
    assert isinstance(overrides["max_sensor_offset_ms"], float) and isinstance(overrides["num_beams"], int)


@pytest.mark.parametrize("name, text", [("max_rate_hz", "fast"), ("num_beams", "2.5"), ("overlay", "maybe")])
def test_bad_override_values_name_the_argument(name, text):
    with pytest.raises(LaunchArgumentError, match=rf"{name}:='{text}'"):
        launch_args.parameter_overrides({name: text})


def test_every_node_argument_is_a_parameter_with_its_description():
    descriptions = launch_args.node_argument_descriptions()
    specs = {name: description for name, _, description, _ in NodeParams.specs()}
    required = {"model", "backend", "cameras", "image_transport", "device", "precision", "prompt", "max_new_tokens",
                "num_beams", "lidar_topic", "radar_topic", "max_sensor_offset_ms", "max_rate_hz", "overlay"}
    assert set(descriptions) >= required
    for name, description in descriptions.items():
        assert description.startswith(specs[name]) and "empty keeps the params_file value" in description
    assert {"log_level", "respawn", "fastdds_profile", "namespace", "use_sim_time"} <= set(launch_args.LAUNCH_SWITCHES)
    assert all(len(description) > 15 for _, description in launch_args.LAUNCH_SWITCHES.values())
    # the switches' defaults parse
    launch_args.parse_bool("respawn", launch_args.LAUNCH_SWITCHES["respawn"][0])
    launch_args.ros_arguments(launch_args.LAUNCH_SWITCHES["log_level"][0])


@pytest.mark.parametrize("text", ["true", "false", "1", "0", "True", "off"])
def test_fastdds_profile_is_a_switch_the_cli_accepts(text):
    env = launch_args.fastdds_profile_env(text, str(FASTDDS_XML), distro="jazzy")
    assert env == ({"FASTRTPS_DEFAULT_PROFILES_FILE": str(FASTDDS_XML)}
                   if launch_args.parse_bool("x", text) else {})
    with pytest.raises(LaunchArgumentError, match="fastdds_profile"):
        launch_args.fastdds_profile_env("/some/profile.xml", str(FASTDDS_XML))
    with pytest.raises(LaunchArgumentError, match="does not exist"):
        launch_args.fastdds_profile_env("true", "/no/such/profile.xml")


@pytest.mark.parametrize("distro, variable", [
    ("humble", "FASTRTPS_DEFAULT_PROFILES_FILE"), ("jazzy", "FASTRTPS_DEFAULT_PROFILES_FILE"),
    ("kilted", "FASTDDS_DEFAULT_PROFILES_FILE"), ("rolling", "FASTDDS_DEFAULT_PROFILES_FILE"),
])
def test_one_profile_variable_per_distro(distro, variable, monkeypatch):
    assert launch_args.fastdds_profile_variable(distro) == variable
    monkeypatch.setenv("ROS_DISTRO", distro)
    assert list(launch_args.fastdds_profile_env("true", str(FASTDDS_XML))) == [variable]


@pytest.mark.ros
def test_the_installed_fast_dds_reads_the_variable_chosen_for_its_distro(tmp_path):
    """The distro under test (ROS_DISTRO, set by the Makefile like a ROS setup script does) reads exactly the chosen
    variable: a broken file behind it is reported by Fast DDS's XML parser, and the good profile loads without the
    deprecation warning Kilted prints for FASTRTPS_DEFAULT_PROFILES_FILE."""
    script = "import rclpy; rclpy.init(); rclpy.create_node('profile_probe'); print('up'); rclpy.shutdown()"
    broken = tmp_path / "broken.xml"
    broken.write_text("<dds><profiles")
    variable = launch_args.fastdds_profile_variable()
    base = {k: v for k, v in os.environ.items() if not k.endswith("_DEFAULT_PROFILES_FILE")}

    def start(env):
        result = subprocess.run([sys.executable, "-c", script], env={**base, **env}, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0 and "up" in result.stdout, result.stderr
        return result.stdout + result.stderr  # Fast DDS 2.x logs errors to stdout, 3.x to stderr

    assert "XMLPARSER" in start({variable: str(broken)})
    clean = start(launch_args.fastdds_profile_env("true", str(FASTDDS_XML)))
    assert "XMLPARSER" not in clean and "deprecated" not in clean, clean


def test_configured_value_follows_override_then_params_file_then_default(tmp_path):
    assert launch_args.configured_value("cameras", {"cameras": ["left"]}, str(CONFIG_YAML)) == ["left"]
    assert launch_args.configured_value("cameras", {}, str(CONFIG_YAML)) == yaml.safe_load(
        CONFIG_YAML.read_text())["/**"]["ros__parameters"]["cameras"]
    named = tmp_path / "named.yaml"
    named.write_text("caption_node:\n  ros__parameters:\n    image_transport: compressed\n")
    assert launch_args.configured_value("image_transport", {}, str(named)) == "compressed"
    assert launch_args.configured_value("cameras", {}, str(named)) == ["front"]  # NodeParams default, as a list
    with pytest.raises(LaunchArgumentError, match="params_file"):
        launch_args.configured_value("cameras", {}, str(tmp_path / "missing.yaml"))


def test_player_commands():
    topics = launch_args.image_topics(["front", "left"], "compressed", "perception")
    assert topics == ["/perception/front/image/compressed", "/perception/left/image/compressed"]
    assert launch_args.image_topics(["front"], "raw") == ["/front/image"]
    assert launch_args.player_command("bag-replay", "drive", "0.5", "false", "", topics) == [
        "bag-replay", "drive", "--clock", "--rate", "0.5", "--wait-for", *topics]
    assert launch_args.player_command("ros2bag", "drive", "1.0", "true", "2.5", topics) == [
        "ros2", "bag", "play", "drive", "--clock", "--rate", "1.0", "--loop", "--start-offset", "2.5"]
    for args, name in [(("vlc", "d", "1", "false", ""), "player"), (("ros2bag", " ", "1", "false", ""), "bag"),
                       (("ros2bag", "d", "0", "false", ""), "rate"), (("ros2bag", "d", "1", "no", "x"), "start_offset"),
                       (("ros2bag", "d", "1", "maybe", ""), "loop")]:
        with pytest.raises(LaunchArgumentError, match=name):
            launch_args.player_command(*args, [])


def test_managed_and_autostart_decide_the_executable_arguments_and_the_lifecycle_steps():
    assert launch_args.node_arguments("false", "info") == ["--ros-args", "--log-level", "info"]
    assert launch_args.node_arguments("true", "warn") == ["--managed", "--ros-args", "--log-level", "warn"]
    assert launch_args.lifecycle_steps("false", "false") == launch_args.lifecycle_steps("true", "false") == ()
    steps = launch_args.lifecycle_steps("true", "true")
    assert [(s.transition, s.through, s.goal) for s in steps] == [("configure", "configuring", "inactive"),
                                                                   ("activate", "activating", "active")]
    with pytest.raises(launch_args.LaunchArgumentError, match="autostart:=true .* add managed:=true"):
        launch_args.lifecycle_steps("false", "true")
    with pytest.raises(launch_args.LaunchArgumentError, match="managed:='maybe' is not a boolean"):
        launch_args.node_arguments("maybe", "info")


def test_the_managed_flag_reaches_the_executable_only_before_the_ros_arguments():
    from blip_caption_ros.caption_node import wants_managed

    assert wants_managed(launch_args.node_arguments("true", "info"))
    assert not wants_managed(launch_args.node_arguments("false", "info"))
    assert not wants_managed(["--ros-args", "-p", "x:=1", "--managed"])  # after --ros-args it is ROS's (an error)


def test_launch_args_imports_neither_launch_nor_rclpy():
    code = ("import sys, blip_caption_ros.launch_args; "
            "print(sorted(m for m in ('launch', 'launch_ros', 'rclpy', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.stdout.strip() == "[]", result.stderr


def test_ros2bag_player_says_what_is_missing(monkeypatch, tmp_path):
    """ros2cli without rosbag2 gives the package's own line, not ros2cli's usage error for an unknown verb."""
    ros2 = tmp_path / "ros2"
    ros2.write_text("#!/bin/sh\nexit 2\n")
    ros2.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "no `ros2` on PATH" in launch_args.ros2bag_missing()
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "without rosbag2" in launch_args.ros2bag_missing()  # no ros2bag package in this environment
