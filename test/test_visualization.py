"""Foxglove layout, RViz config and the replay launch file: they point at topics the tools really write."""

import ast
import json
import re

import cv2
import numpy as np
import pytest
import yaml

from blip_caption_ros import bag_io
from blip_caption_ros.backends import CaptionerConfig, load_captioner
from blip_caption_ros.caption_bag import caption_bag
from test.support import REPO

LAYOUT = REPO / "config" / "foxglove_layout.json"
RVIZ = REPO / "config" / "caption.rviz"
REPLAY_LAUNCH = REPO / "launch" / "replay.launch.py"


@pytest.fixture(scope="module")
def captioned(tmp_path_factory, tiny_blip_dir, drive_bag):
    root = tmp_path_factory.mktemp("viz")
    captioner = load_captioner(CaptionerConfig(model=str(tiny_blip_dir), max_new_tokens=4))
    caption_bag(drive_bag, root / "captioned", captioner, rate_hz=0)
    with bag_io.BagReader(root / "captioned") as reader:
        overlays = [reader.decode(m) for m in reader.messages(["/front/caption/image/compressed"])]
        topics = reader.topics
    with bag_io.BagReader(drive_bag) as reader:
        frame = reader.decode(next(reader.messages(["/front/image/compressed"])))
    source_height, source_width = cv2.imdecode(np.asarray(frame.data), cv2.IMREAD_COLOR).shape[:2]
    return topics, overlays, (source_height, source_width)


def _panel_ids(node) -> set[str]:
    if isinstance(node, str):
        return {node}
    return _panel_ids(node["first"]) | _panel_ids(node["second"])


def test_foxglove_layout_panels_read_topics_of_a_captioned_bag(captioned):
    captioned_topics = captioned[0]
    layout = json.loads(LAYOUT.read_text())
    panels = layout["configById"]
    assert _panel_ids(layout["layout"]) == set(panels)
    assert {panel.split("!")[0] for panel in panels} == {"Image", "RawMessages", "Plot", "map"}
    assert panels["Image!overlay"]["imageMode"]["imageTopic"] in captioned_topics
    assert panels["RawMessages!caption"]["topicPath"].split(".")[0] in captioned_topics
    assert panels["map!gps"]["followTopic"] == "/gps/fix" and "/gps/fix" in captioned_topics
    (script,) = layout["userNodes"].values()
    inputs = json.loads(re.search(r"inputs = (\[.*?\]);", script["sourceCode"]).group(1))
    output = re.search(r'output = "(.*?)";', script["sourceCode"]).group(1)
    assert set(inputs) <= set(captioned_topics)
    fields = set(re.findall(r"^\s+(\w+): num\(", script["sourceCode"], re.MULTILINE))
    plotted = [p["value"] for p in panels["Plot!ranges"]["paths"]]
    assert plotted and all(path.startswith(output + ".") and path.split(".")[1] in fields for path in plotted)


def test_rviz_config_shows_the_node_outputs():
    config = yaml.safe_load(RVIZ.read_text())
    displays = {d["Class"]: d for d in config["Visualization Manager"]["Displays"]}
    assert displays["rviz_default_plugins/Image"]["Topic"]["Value"] == "/front/caption/image"
    assert displays["rviz_default_plugins/Marker"]["Topic"]["Value"] == "/front/caption/marker"
    node_source = (REPO / "blip_caption_ros" / "node.py").read_text()
    assert 'f"{camera}/caption/marker"' in node_source and 'f"{camera}/caption/image"' in node_source
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "front_camera"


def test_replay_launch_declares_described_arguments_and_plays_with_clock():
    tree = ast.parse(REPLAY_LAUNCH.read_text())
    declared = {}
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", None) == "DeclareLaunchArgument"):
        keywords = {kw.arg: kw.value for kw in call.keywords}
        declared[call.args[0].value] = keywords["description"].value
    # model, cameras and the other node arguments are declared by the included caption.launch.py (launch arguments
    # given on the command line reach it), so they are not declared twice here
    assert {"bag", "player", "rate", "loop", "params_file", "image_transport"} <= set(declared)
    assert all(len(d) > 15 for d in declared.values())
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    # the node on simulated time; the players' --clock command lines are tested in test_launch_args
    assert {"caption.launch.py", "use_sim_time"} <= literals and "player_command" in REPLAY_LAUNCH.read_text()


def test_foxglove_layout_has_no_field_the_apps_reject_or_ignore():
    """Checked in Lichtblick (README, "Visualisation"): a null calibrationTopic is marked invalid, and a Plot's
    custom title is read from lichtblickPanelTitle (Lichtblick) or foxglovePanelTitle (Foxglove), not `title`."""
    panels = json.loads(LAYOUT.read_text())["configById"]

    def nulls(node):
        if isinstance(node, dict):
            return [k for k, v in node.items() if v is None] + [k for v in node.values() for k in nulls(v)]
        return [k for v in node for k in nulls(v)] if isinstance(node, list) else []

    assert "calibrationTopic" not in nulls(panels["Image!overlay"])
    plot = panels["Plot!ranges"]
    assert "title" not in plot and plot["foxglovePanelTitle"] == plot["lichtblickPanelTitle"]
    assert "closing speed" in plot["foxglovePanelTitle"]


def test_overlays_are_scaled_to_a_viewer_size(captioned):
    """The drive's small frames become 640-px-wide overlays: legible text on a band, not over the whole frame."""
    from blip_caption_ros.overlay import OVERLAY_WIDTH

    _, overlays, (source_height, source_width) = captioned
    assert overlays and source_width < OVERLAY_WIDTH
    for overlay in overlays:
        image = cv2.imdecode(np.asarray(overlay.data), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (round(source_height * OVERLAY_WIDTH / source_width), OVERLAY_WIDTH)
        dark_rows = (image.mean(axis=(1, 2)) < 60).mean()
        assert 0.05 < dark_rows < 0.5  # the caption band, not the whole frame
