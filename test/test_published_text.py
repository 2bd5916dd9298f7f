"""One caption text: a blip-train checkpoint records how it captions, and the node over DDS, caption-bag's MCAP and
blip-eval's caption generation publish the identical strings for the same images with those settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blip_caption_ros import bag_io
from blip_caption_ros.backends import CaptionerConfig, load_captioner
from blip_caption_ros.backends.caption_settings import PROMPT_FILE, model_caption_settings
from blip_caption_ros.backends.decoding import tidy_caption
from blip_caption_ros.caption_bag import caption_bag
from blip_train.datasets.synthetic import generate_dataset
from blip_train.drives import bag_messages
from blip_train.train import main as train_main

S, MS = 1_000_000_000, 1_000_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_blip_dir):
    root = tmp_path_factory.mktemp("published")
    data = root / "bdd"
    generate_dataset(data, 4, split="train", seed=5)
    generate_dataset(data, 2, split="val", seed=5)
    out = root / "run"
    assert train_main(["--data_root", str(data), "--model", str(tiny_blip_dir), "--out_dir", str(out),
                       "--cache_dir", str(root / "cache"), "--epochs", "1", "--batch_size", "4", "--num_workers",
                       "0", "--max_new_tokens", "4", "--prompt", "a picture of ", "--no-progress"]) == 0
    return out / "checkpoints" / "last", data


def test_a_checkpoint_records_its_prompt_and_a_caption_length_covering_its_training_captions(checkpoint):
    from blip_caption_ros.backends.model_loading import load_processor
    from blip_train.data import load_caption_split

    directory, data = checkpoint
    assert json.loads((directory / PROMPT_FILE).read_text()) == {"prompt": "a picture of "}
    settings = model_caption_settings(directory)
    tokenizer = load_processor(directory).tokenizer
    split = load_caption_split(data, "train", (32, 32))
    longest = max(len(tokenizer(c, add_special_tokens=False).input_ids) for c in split.captions) + 1
    # --max_new_tokens 4 was raised to cover them (the margin is capped by the tiny model's 64 positions)
    assert settings.max_new_tokens >= longest and settings.max_new_tokens > 4
    assert (settings.prompt, settings.num_beams) == ("a picture of ", 1)
    captioner = load_captioner(CaptionerConfig(model=str(directory)))  # no settings given: the checkpoint's
    assert (captioner.config.prompt, captioner.config.max_new_tokens) == ("a picture of ", settings.max_new_tokens)


@pytest.mark.slow
def test_node_caption_bag_eval_and_onnxruntime_publish_the_same_strings(checkpoint, tmp_path):
    """Camera frames larger than the model's input (and not square), as a vehicle sends them: blip-eval reads them
    from PNG files, caption-bag and the node get rgb8 messages, onnxruntime runs the checkpoint's blip-export."""
    import cv2
    import rclpy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from blip_caption_ros.backends.model_loading import load_blip
    from blip_train.data import prepare_images
    from blip_train.eval import generate_captions
    from blip_train.export import ExportOptions, export
    from test.ros_helpers import NodeProcess, Probe

    directory, _ = checkpoint
    rng = np.random.default_rng(3)
    # smooth frames (a blurred random field), so that resampling them matters as it does for a real picture
    arrays = [cv2.GaussianBlur(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8), (9, 9), 3) for _ in range(3)]
    stamps = [1_700_000_000 * S + i * 200 * MS for i in range(len(arrays))]
    files = []
    for i, rgb in enumerate(arrays):
        files.append(tmp_path / f"frame{i}.png")
        assert cv2.imwrite(str(files[-1]), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    # blip-eval's generation, with the checkpoint's recorded settings, through its image cache
    model, processor = load_blip(directory)
    settings = model_caption_settings(directory)
    images, bad = prepare_images(files, (32, 32), cache_dir=tmp_path / "cache")
    assert not bad
    evaluated = generate_captions(model, processor, images, prompt=settings.prompt,
                                  max_new_tokens=settings.max_new_tokens, num_beams=settings.num_beams, batch_size=2)

    # onnxruntime on the checkpoint's export (which copies its caption settings)
    export(ExportOptions(checkpoint=str(directory), out=str(tmp_path / "onnx"), samples=1))
    from_onnx = load_captioner(CaptionerConfig(model=str(tmp_path / "onnx"), backend="onnxruntime")).caption(arrays)

    # caption-bag on a recording of the same frames
    bag = tmp_path / "drive"
    with bag_io.BagWriter(bag, storage="mcap") as writer:
        for stamp, rgb in zip(stamps, arrays, strict=True):
            writer.write("/front/image", stamp, bag_messages.image_msg(rgb, stamp, "front"))
    caption_bag(bag, tmp_path / "captioned", load_captioner(CaptionerConfig(model=str(directory))), rate_hz=0,
                lidar_topic="", radar_topic="", overlay=False)
    with bag_io.BagReader(tmp_path / "captioned") as reader:
        from_bag = [json.loads(reader.decode(m).data)["caption"] for m in reader.messages(["/front/caption"])]

    # the node over DDS, with its defaults (= the checkpoint's settings)
    rclpy.init()
    node = NodeProcess("-p", f"model:={directory}", "-p", "lidar_topic:=''", "-p", "radar_topic:=''")
    probe = Probe("published_text_probe")
    try:
        probe.subscribe(String, "front/caption")
        probe.wait_until_connected(node, {"front/image": Image}, ["front/caption"])
        from_node = []
        for stamp, rgb in zip(stamps, arrays, strict=True):
            msg = Image(height=72, width=96, encoding="rgb8", step=96 * 3, data=rgb.tobytes())
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, S)
            msg.header.frame_id = "front"
            probe.publish("front/image", msg)
            from_node.append(probe.caption_for("front/caption", stamp, timeout=60)["caption"])
    finally:
        probe.destroy()
        rclpy.shutdown()
        assert node.stop() == 0, node.output()
    assert "overriding" not in node.output()  # nothing was overridden
    assert from_node == from_bag == evaluated == from_onnx, (from_node, from_bag, evaluated, from_onnx)
    assert all(caption == tidy_caption(caption) for caption in from_node)  # published text is already tidy


def test_tidy_caption_writes_tokenizer_output_as_the_training_captions_read():
    assert tidy_caption("a freeway in daylight . the view shows a car ahead , close by ; i can see a bus .") == \
        "A freeway in daylight. The view shows a car ahead, close by; I can see a bus."
    assert tidy_caption("  twenty - one   cars ") == "Twenty-one cars"
