"""The node's ROS-free runtime: newest-frame slots, the worker, caption records, params, diagnostics, overlay."""

import threading
import time

import numpy as np
import pytest

from blip_caption_ros.caption_message import Latency, caption_record, stamp_dict
from blip_caption_ros.diagnostics import OK, STALE, WARN, DiagnosticsReporter
from blip_caption_ros.frame_slots import Frame, FrameSlots
from blip_caption_ros.imaging import ImageConversionError
from blip_caption_ros.overlay import draw_caption
from blip_caption_ros.params import NodeParams, ParameterError
from blip_caption_ros.sensors import LidarSummary, RadarSummary
from blip_caption_ros.stats import CameraStats, LatencyWindow, SensorStats
from blip_caption_ros.sync import SensorBuffer, Stamped
from blip_caption_ros.worker import CaptionWorker

MS = 1_000_000
IMAGE = np.zeros((8, 8, 3), np.uint8)
LIDAR = LidarSummary("lidar", 100, 4.0, -30.0, 30.0, 10, 6.5)
RADAR = RadarSummary("radar", 3, 12.0, 7.25, -1.5, "v_r")


def frame(camera="front", stamp_ms=1000, decode=lambda: IMAGE):
    return Frame(camera, stamp_ms * MS, f"{camera}_optical", decode, header=("header of", camera, stamp_ms))


class FakeCaptioner:
    backend, model_name = "fake", "fake-model"

    def __init__(self, on_call=None):
        self.calls, self.prompts, self.on_call = [], [], on_call

    def caption(self, images, prompt=None):
        self.calls.append(len(images))
        self.prompts.append(prompt)
        if self.on_call:
            self.on_call()
        return [f"caption {i}" for i in range(len(images))]


def make_worker(captioner, slots, **kwargs):
    published, reports = [], []
    worker = CaptionWorker(slots, captioner, published.extend, lambda *r: reports.append(r), **kwargs)
    return worker, published, reports


def test_newest_frame_wins_and_replaced_frames_count_as_dropped():
    slots = FrameSlots(["front", "left"])
    assert slots.put(frame(stamp_ms=1)) is False
    assert slots.put(frame(stamp_ms=2)) is True
    slots.put(frame("left", stamp_ms=3))
    taken = slots.take(timeout=0)
    assert [(f.camera, f.stamp_ns // MS) for f in taken] == [("front", 2), ("left", 3)]
    assert slots.take(timeout=0) == []
    assert slots.stats["front"].snapshot() == {"received": 2, "captioned": 0, "dropped": 1, "bad_inputs": 0,
                                               "failed": 0, "lost": 0, "qos_incompatible": 0}


def test_take_wakes_on_put_and_on_close():
    slots = FrameSlots(["front"])
    threading.Timer(0.05, slots.put, [frame()]).start()
    assert len(slots.take(timeout=5)) == 1
    threading.Timer(0.05, slots.close).start()
    assert slots.take(timeout=5) == []


def test_worker_batches_cameras_and_matches_sensors_when_the_caption_is_ready():
    slots = FrameSlots(["front", "left"])
    lidar, radar = SensorBuffer(capacity=10), SensorBuffer(capacity=10)
    lidar.add(900 * MS, "decoy")  # 100 ms before the image: inside the bound, but...
    radar.add(1500 * MS, RADAR)  # 500 ms away: stale
    # ...a sweep 20 ms after the image arrives while the model runs: nearer, so it wins
    captioner = FakeCaptioner(on_call=lambda: lidar.add(1020 * MS, LIDAR))
    worker, published, _ = make_worker(captioner, slots, lidar=lidar, radar=radar, max_sensor_offset_ms=150.0,
                                       prompt="a picture of")
    slots.put(frame("front", 1000))
    slots.put(frame("left", 1010))
    results = worker.run_once(timeout=0)
    assert captioner.calls == [2] and captioner.prompts == ["a picture of"]
    assert published == results
    front, left = (r.record for r in results)
    assert front["stamp"] == {"sec": 1, "nanosec": 0} and front["frame_id"] == "front_optical"
    assert front["lidar"]["offset_ms"] == 20.0 and front["lidar"]["nearest_m"] == 4.0
    assert left["lidar"]["offset_ms"] == 10.0
    assert front["radar"] is None
    assert results[0].frame.header == ("header of", "front", 1000)
    assert slots.stats["front"].snapshot()["captioned"] == 1


def test_bad_frames_are_counted_and_the_rest_still_captioned():
    def bad():
        raise ImageConversionError("unsupported image encoding 'yuv422'")

    slots = FrameSlots(["front", "left"])
    worker, published, reports = make_worker(FakeCaptioner(), slots)
    slots.put(frame("front", decode=bad))
    slots.put(frame("left"))
    worker.run_once(timeout=0)
    assert [r.frame.camera for r in published] == ["left"]
    assert reports[0][:2] == ("bad_input", "front")
    assert slots.stats["front"].snapshot()["bad_inputs"] == 1


def test_model_failures_are_counted_not_fatal():
    class Broken(FakeCaptioner):
        def caption(self, images, prompt=None):
            raise RuntimeError("CUDA out of memory")

    slots = FrameSlots(["front"])
    worker, published, reports = make_worker(Broken(), slots)
    slots.put(frame())
    assert worker.run_once(timeout=0) == [] and published == []
    assert reports[0][0] == "failed" and slots.stats["front"].snapshot()["failed"] == 1


def test_worker_thread_drains_a_burst_and_accounts_for_every_frame():
    release = threading.Event()
    slots = FrameSlots(["front"])
    worker, published, _ = make_worker(FakeCaptioner(on_call=lambda: release.wait(5)), slots)
    worker.start()
    try:
        for stamp in range(1, 31):
            slots.put(frame(stamp_ms=stamp))
        release.set()
        deadline = time.monotonic() + 5
        while not (published and published[-1].frame.stamp_ns == 30 * MS) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop()
    counts = slots.stats["front"].snapshot()
    assert published[-1].frame.stamp_ns == 30 * MS  # the newest frame is always captioned
    assert counts["received"] == 30 == counts["captioned"] + counts["dropped"]
    assert counts["dropped"] >= 1 and counts["captioned"] == len(published)


def test_rate_limit_spaces_batches():
    slots = FrameSlots(["front"])
    worker, _, _ = make_worker(FakeCaptioner(), slots, max_rate_hz=4.0)
    assert worker.min_period_s == 0.25


def test_caption_record_matches_the_contract():
    record = caption_record(camera="front", stamp_ns=12 * 10**9 + 5, frame_id="cam", caption="a car",
                            backend="torch", model="m", latency=Latency(1.0, 2.0, 3.5),
                            lidar=Stamped(12 * 10**9 + 5 - 30 * MS, LIDAR), radar=Stamped(12 * 10**9 + 5 + 2 * MS,
                                                                                           RADAR))
    assert set(record) == {"stamp", "frame_id", "camera", "caption", "backend", "model", "latency_ms", "lidar",
                           "radar"}
    assert record["latency_ms"] == {"queue": 1.0, "inference": 2.0, "total": 3.5}
    assert record["lidar"] == {"stamp": {"sec": 11, "nanosec": 970_000_005}, "frame_id": "lidar", "offset_ms": -30.0,
                               "points": 100, "nearest_m": 4.0,
                               "sector": {"min_deg": -30.0, "max_deg": 30.0, "points": 10, "nearest_m": 6.5}}
    assert record["radar"] == {"stamp": {"sec": 12, "nanosec": 2_000_005}, "frame_id": "radar", "offset_ms": 2.0,
                               "targets": 3, "nearest_m": 12.0, "closing_speed_mps": 7.25, "rcs_dbsm": -1.5}
    assert stamp_dict(1_500_000_000) == {"sec": 1, "nanosec": 500_000_000}


def test_params_defaults_descriptions_and_validation():
    params = NodeParams()
    assert params.cameras == ("front",) and params.max_sensor_offset_ms == 100.0
    assert all(description for _, _, description, _ in NodeParams.specs())
    assert [name for name, *_, dynamic in NodeParams.specs() if dynamic] == ["prompt"]
    assert params.captioner_config().prompt == "a picture of"
    with pytest.raises(ParameterError, match="image_transport='h264'.*cameras=.*duplicates.*max_sensor_offset_ms"):
        NodeParams(image_transport="h264", cameras=("a", "a"), max_sensor_offset_ms=0.0)
    with pytest.raises(ParameterError, match="lidar sector"):
        NodeParams(lidar_sector_min_deg=40.0, lidar_sector_max_deg=30.0)


def test_diagnostics_levels():
    now = [100.0]
    stats = CameraStats("front", clock=lambda: now[0])
    reporter = DiagnosticsReporter("/caption_node", stale_after_s=2.0)
    assert reporter.camera(stats).level == STALE
    stats.count("received")
    stats.count("captioned")
    status = reporter.camera(stats)
    assert (status.name, status.level, status.values["captioned"]) == ("/caption_node: front", OK, "1")
    stats.count("received")
    stats.count("bad_inputs")
    assert reporter.camera(stats).level == WARN
    assert reporter.camera(stats).level == OK  # only while it happens
    for _ in range(2):  # 2 frames received of 12 published: the middleware lost 10
        stats.count("received")
        stats.count("captioned")
    stats.count("lost", 10)
    status = reporter.camera(stats, "best_effort")
    assert status.level == WARN and "far slower than published: 2 of 12 received" in status.message
    assert "large-data profile" in status.message and status.values["subscription_reliability"] == "best_effort"
    stats.count("received")
    stats.count("lost", 2)  # 1 of 3: too few lost to call it a pattern
    assert reporter.camera(stats).level == OK
    stats.count("qos_incompatible")
    status = reporter.camera(stats, "reliable")
    assert status.level == WARN and "incompatible" in status.message and "requests reliable" in status.message
    now[0] += 5
    assert reporter.camera(stats).level == STALE
    node = reporter.node("torch", "m", "cpu", "fp32", {"lidar": (SensorStats("lidar"), 0.05),
                                                       "radar": (SensorStats("radar"), None)})
    assert node.level == WARN and "radar silent" in node.message and node.values["lidar_age_s"] == "0.050"


def test_latency_window_percentiles():
    window = LatencyWindow(size=100)
    assert window.percentile(50) is None
    for value in range(1, 101):
        window.add(float(value))
    assert window.percentile(50) == pytest.approx(50.5) and window.percentile(95) == pytest.approx(95.05)


def test_overlay_draws_on_a_copy():
    image = np.full((240, 320, 3), 128, np.uint8)
    out = draw_caption(image, "a car driving down a wet street at night " * 3)
    assert out.shape == image.shape and (image == 128).all()
    assert (out != image).any()


def test_a_hub_that_does_not_answer_fails_a_download_within_the_probe_timeout(tmp_path, monkeypatch):
    """allow_model_download on a vehicle without network: one clear error in seconds, not minutes of retries."""
    import socket

    from blip_caption_ros.backends import model_source

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # nothing cached
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(model_source, "hub_offline", lambda: False)
    def black_hole(*args, timeout=None, **kwargs):  # no answer, then the timeout a real socket would give
        time.sleep(30)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", black_hole)
    started = time.monotonic()
    with pytest.raises(model_source.ModelFilesError, match=r"cannot be reached within 0.5 s \(no answer\)"):
        model_source.check_hub_reachable("org/uncached-model", timeout_s=0.5)
    assert time.monotonic() - started < 2.0

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(model_source.ModelFilesError, match="connection refused.*hf download org/uncached-model"):
        model_source.check_hub_reachable("org/uncached-model", timeout_s=0.5)
    model_source.check_hub_reachable(str(tmp_path))  # a local directory never asks the hub


def test_inputs_follow_their_publishers_reliability():
    from blip_caption_ros.input_qos import BEST_EFFORT, RELIABLE, follow_publishers

    assert follow_publishers([RELIABLE, RELIABLE], BEST_EFFORT) == RELIABLE  # retransmission saves large frames
    assert follow_publishers([RELIABLE, BEST_EFFORT], RELIABLE) == BEST_EFFORT  # reliable would not match one
    assert follow_publishers([], RELIABLE) == RELIABLE and follow_publishers([], BEST_EFFORT) == BEST_EFFORT


def test_a_model_load_is_abandoned_at_once_when_a_stop_comes_and_its_errors_pass_through():
    from blip_caption_ros.lifecycle import LoadCancelled, load_cancellably

    cancel, release = threading.Event(), threading.Event()
    assert load_cancellably(lambda: "model", cancel) == "model"
    with pytest.raises(ValueError, match="bad weights"):
        load_cancellably(lambda: (_ for _ in ()).throw(ValueError("bad weights")), cancel)
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(LoadCancelled):
        load_cancellably(lambda: release.wait(30), cancel)  # a load of 30 s
    assert time.monotonic() - started < 1.0
    release.set()


def test_lifecycle_parameter_rules_and_state_statuses():
    from blip_caption_ros.lifecycle import parameter_change_problem, state_status

    assert parameter_change_problem("prompt", True, "active") == ""
    assert parameter_change_problem("model", False, "unconfigured") == ""
    assert "cleanup first" in parameter_change_problem("model", False, "inactive")
    assert state_status("/n", "configuring", "m").message == "configuring: loading the model"
    failed = state_status("/n", "unconfigured", "m", "cannot load caption model 'm': no such directory")
    assert failed.level == WARN and failed.values["last_failure"].endswith("no such directory")
    idle = state_status("/n", "inactive", "m")
    assert idle.level == OK and idle.values["lifecycle_state"] == "inactive" and "not captioning" in idle.message
