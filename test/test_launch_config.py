"""launch/caption.launch.py (structure: launch is not installable here), config/caption.yaml against the real node,
and the Fast DDS large-data profile."""

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml

from blip_caption_ros.launch_args import fastdds_profile_env
from blip_caption_ros.params import NodeParams
from test.ros_helpers import CONFIG_YAML, NodeProcess, Probe
from test.support import REPO

LAUNCH_DIR = REPO / "launch"
FASTDDS_XML = REPO / "config" / "fastdds_large_data.xml"


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


def _strings(tree: ast.AST) -> set[str]:
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_caption_launch_declares_every_argument_from_launch_args_and_starts_the_console_script():
    tree = ast.parse((LAUNCH_DIR / "caption.launch.py").read_text())
    declared = [call for call in _calls(tree, "DeclareLaunchArgument")]
    assert all("description" in {kw.arg for kw in call.keywords} for call in declared)
    literals = _strings(tree)
    # the node arguments and switches come from launch_args (tested in test_launch_args.py), read back by name there
    assert {"node_argument_descriptions", "LAUNCH_SWITCHES", "NODE_ARGUMENTS"} <= {
        node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert {"params_file", "namespace", "use_sim_time", "fastdds_profile", "log_level", "respawn",
            "respawn_delay", "managed", "autostart"} <= literals
    assert "caption.yaml" in literals and "fastdds_large_data.xml" in ast.unparse(tree)
    (node,) = _calls(tree, "node_class")  # launch_ros Node, or LifecycleNode with managed:=true
    assert "LifecycleNode if launch_args.parse_bool(\"managed\"" in ast.unparse(tree).replace("'", '"')
    keywords = {kw.arg: kw.value for kw in node.keywords}
    assert keywords["executable"].value == "caption_node"
    assert {"respawn", "arguments", "additional_env", "parameters"} <= set(keywords)
    assert _calls(tree, "OnProcessExit") and "is_shutdown" in ast.unparse(tree)
    # autostart: launch_ros' lifecycle events, the steps from launch_args.lifecycle_steps (tested there)
    assert {"lifecycle_steps", "node_arguments"} <= {node.attr for node in ast.walk(tree)
                                                       if isinstance(node, ast.Attribute)}
    assert _calls(tree, "ChangeState") and _calls(tree, "OnStateTransition") and _calls(tree, "OnProcessStart")
    assert "caption_node = blip_caption_ros.caption_node:main" in (REPO / "setup.py").read_text()
    assert "generate_launch_description" in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}


def test_replay_launch_ends_with_the_player_and_offers_both_players():
    tree = ast.parse((LAUNCH_DIR / "replay.launch.py").read_text())
    literals = _strings(tree)
    assert {"bag", "player", "rate", "loop", "start_offset", "caption.launch.py", "use_sim_time"} <= literals
    assert _calls(tree, "OnProcessExit") and _calls(tree, "Shutdown") and _calls(tree, "player_command")
    assert "bag-replay = blip_caption_ros.bag_replay:main" in (REPO / "setup.py").read_text()


def test_config_lists_every_parameter():
    params = yaml.safe_load(CONFIG_YAML.read_text())["/**"]["ros__parameters"]
    from_model = NodeParams.from_model()  # default to the model's own settings: listed commented out
    assert list(params) == [name for name, *_ in NodeParams.specs() if name not in from_model]
    defaults = {name: list(default) if isinstance(default, tuple) else default
                for name, default, *_ in NodeParams.specs() if name not in from_model}
    assert params == defaults
    text = CONFIG_YAML.read_text()
    assert all(f"# {name}: " in text for name in from_model)


@pytest.mark.slow
@pytest.mark.ros
def test_every_config_key_is_declared_by_the_real_node(caption_model):
    import rclpy
    from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters

    params = yaml.safe_load(CONFIG_YAML.read_text())["/**"]["ros__parameters"]
    node = NodeProcess(*caption_model.node_args)
    rclpy.init()
    probe = Probe("config_probe")
    try:
        def call(service_type, service, request):
            client = probe.node.create_client(service_type, f"/caption_node/{service}")
            deadline_s = 60.0
            while not client.wait_for_service(timeout_sec=0.2):
                assert node.process.poll() is None, node.output()
                deadline_s -= 0.2
                assert deadline_s > 0, "caption_node never offered its parameter services"
            future = client.call_async(request)
            probe.spin_until(future.done, what=service)
            return future.result()

        declared = set(call(ListParameters, "list_parameters", ListParameters.Request()).result.names)
        assert set(params) | set(NodeParams.from_model()) <= declared, set(params) - declared
        values = call(GetParameters, "get_parameters", GetParameters.Request(names=list(params))).values
        for (name, expected), value in zip(params.items(), values, strict=True):
            actual = rclpy.parameter.parameter_value_to_python(value)
            if name in ("model", "backend"):  # overridden on the command line
                expected = str(caption_model.path) if name == "model" else caption_model.backend
            assert actual == expected, name
        descriptors = call(DescribeParameters, "describe_parameters",
                           DescribeParameters.Request(names=[*params, *NodeParams.from_model()])).descriptors
        assert all(d.description for d in descriptors)
        assert [d.name for d in descriptors if not d.read_only] == ["prompt"]
    finally:
        probe.destroy()
        rclpy.shutdown()
        assert node.stop() == 0, node.output()


def test_fastdds_profile_has_a_64mb_shared_memory_segment_and_loads():
    ns = {"dds": "http://www.eprosima.com"}
    root = ET.parse(FASTDDS_XML).getroot()
    transports = {t.find("dds:transport_id", ns).text: t for t in root.iter(f"{{{ns['dds']}}}transport_descriptor")}
    shm = [t for t in transports.values() if t.find("dds:type", ns).text == "SHM"]
    assert len(shm) == 1 and int(shm[0].find("dds:segment_size", ns).text) == 64 * 1024 * 1024
    participant = root.find(".//dds:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = {t.text for t in participant.iter(f"{{{ns['dds']}}}transport_id")}
    assert shm[0].find("dds:transport_id", ns).text in used and used <= set(transports)

    # Fast DDS itself parses it: a participant comes up and talks to itself, without an XML error
    script = (
        "import rclpy; from std_msgs.msg import String; rclpy.init(); n = rclpy.create_node('fastdds_probe');"
        "got = []; n.create_subscription(String, 'ping', got.append, 10); p = n.create_publisher(String, 'ping', 10);"
        "import time; end = time.monotonic() + 20\n"
        "while not got and time.monotonic() < end:\n"
        " p.publish(String(data='x')); rclpy.spin_once(n, timeout_sec=0.05)\n"
        "print('delivered' if got else 'lost'); rclpy.shutdown()"
    )
    env = {**os.environ, **fastdds_profile_env("true", str(FASTDDS_XML))}  # the variable this distro reads
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "delivered" in result.stdout, result.stdout + result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
