"""caption_node: camera frames in, captions with matched LiDAR/radar summaries out. ROS wiring only.

Topics (relative, remappable), per camera <cam>:
  in   <cam>/image (sensor_msgs/Image) or <cam>/image/compressed (CompressedImage), sensor-data QoS
       lidar/points, radar/points (sensor_msgs/PointCloud2), sensor-data QoS
  out  <cam>/caption (std_msgs/String, JSON), <cam>/caption/marker (visualization_msgs/Marker),
       <cam>/caption/image (rgb8 overlay, built only while subscribed), /diagnostics; all reliable, so both
       reliable and best-effort subscribers match. Every output carries the source image's header.
The work happens in ROS-free modules: frame_slots (newest frame per camera), worker (batching, matching),
captioner (the model), sensors/sync (summaries, time matching), caption_message, overlay, diagnostics.

Caption settings (prompt, max_new_tokens, num_beams) default to what the model records (caption_settings); a value
given in a params file or with -p overrides it and is logged once at start.

Lifecycle: SIGINT (once or twice, as Ctrl-C under `ros2 launch` delivers it) and SIGTERM stop the node cleanly with
exit code 0: the worker finishes its batch and stops before the node and the rclpy context go away. Should the
worker thread end on its own, /diagnostics turns ERROR at once and the node exits 1, for launch `respawn` or systemd
to restart it.
"""

from __future__ import annotations

import array
import functools
import json

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import Marker

from .backends import ModelLoadError, load_captioner
from .backends.caption_settings import CaptionSettingsError, model_caption_settings
from .caption_marker import MarkerSettings, fill_text_marker
from .caption_message import stamp_ns
from .diagnostics import DiagnosticsReporter
from .frame_slots import Frame, FrameSlots
from .imaging import compressed_to_rgb, image_to_rgb
from .overlay import draw_caption
from .params import NodeParams, ParameterError
from .sensors import CloudError, summarize_lidar, summarize_radar
from .shutdown import StartInterrupted
from .stats import SensorStats
from .sync import SensorBuffer
from .worker import CaptionResult, CaptionWorker

STARTUP_ERRORS = (ModelLoadError, ParameterError, CaptionSettingsError, InvalidParameterTypeException,
                  InvalidParameterValueException)
OUTPUT_QOS = QoSProfile(depth=10)  # reliable, volatile: captions are small and every one matters to a recorder
OVERLAY_QOS = QoSProfile(depth=1)  # reliable keep-last-1 never blocks the worker on a slow viewer


class WorkerDied(RuntimeError):
    """The caption worker thread ended without being asked to: nothing would be captioned any more."""


class CaptionNode(Node):
    def __init__(self, **kwargs):
        self.worker: CaptionWorker | None = None  # a start interrupted or failed before the worker exists
        super().__init__("caption_node", **kwargs)
        self.params = p = self._declare_parameters()
        self.captioner = load_captioner(p.captioner_config())
        # Triggered from the worker thread if it dies; its callback (on the executor) reports and ends spinning.
        self._worker_died = self.create_guard_condition(self._on_worker_died)
        self.slots = FrameSlots(p.cameras)
        self.sensors: dict[str, tuple[SensorStats, SensorBuffer]] = {}
        lidar = self._subscribe_cloud("lidar", p.lidar_topic, functools.partial(
            summarize_lidar, settings=p.lidar_settings()))
        radar = self._subscribe_cloud("radar", p.radar_topic, functools.partial(
            summarize_radar, settings=p.radar_settings()))
        self.worker = CaptionWorker(
            self.slots, self.captioner, self._publish, self._report, prompt=p.prompt, lidar=lidar, radar=radar,
            max_sensor_offset_ms=p.max_sensor_offset_ms, max_rate_hz=p.max_rate_hz,
            on_exit=lambda _reason: self._worker_died.trigger())
        self.outputs = {}
        for camera in p.cameras:
            self.outputs[camera] = (
                self.create_publisher(String, f"{camera}/caption", OUTPUT_QOS),
                self.create_publisher(Marker, f"{camera}/caption/marker", OUTPUT_QOS),
                self.create_publisher(Image, f"{camera}/caption/image", OVERLAY_QOS) if p.overlay else None,
            )
            if p.image_transport == "compressed":
                self.create_subscription(CompressedImage, f"{camera}/image/compressed",
                                         functools.partial(self._on_compressed, camera), qos_profile_sensor_data)
            else:
                self.create_subscription(Image, f"{camera}/image", functools.partial(self._on_image, camera),
                                         qos_profile_sensor_data)
        self.diagnostics = DiagnosticsReporter(self.get_fully_qualified_name(), p.stale_timeout_s)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self.create_timer(1.0, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f"captioning {', '.join(p.cameras)} ({p.image_transport}) with {p.model} on {p.backend}/{p.device}: "
            f"prompt {p.prompt!r}, at most {p.max_new_tokens} tokens, {p.num_beams} beam(s)")
        self.worker.start()

    def _declare_parameters(self) -> NodeParams:
        """Every NodeParams parameter; those `from_model` default to what the model records (model is declared
        first), so a params file or -p overrides them only where a user sets them, and that is logged once."""
        values, recorded = {}, None
        for name, default, description, dynamic in NodeParams.specs():
            if name in NodeParams.from_model():
                recorded = recorded or model_caption_settings(values["model"])
                default = getattr(recorded, name)
            value = list(default) if isinstance(default, tuple) else default
            descriptor = ParameterDescriptor(description=description, read_only=not dynamic)
            values[name] = self.declare_parameter(name, value, descriptor).value
        values["cameras"] = tuple(values["cameras"])
        if recorded is not None:
            overrides = recorded.overrides(**{name: values[name] for name in NodeParams.from_model()})
            if overrides:
                self.get_logger().info(f"overriding the model's caption settings ({recorded.source}): "
                                       + "; ".join(overrides))
        return NodeParams(**values)

    def _subscribe_cloud(self, name: str, topic: str, summarize) -> SensorBuffer | None:
        if not topic:
            return None
        buffer = SensorBuffer(self.params.sensor_buffer_size)
        self.sensors[name] = (SensorStats(name), buffer)
        self.create_subscription(PointCloud2, topic, functools.partial(self._on_cloud, name, summarize),
                                 qos_profile_sensor_data)
        return buffer

    def _on_image(self, camera: str, msg: Image) -> None:
        decode = functools.partial(image_to_rgb, msg.encoding, msg.height, msg.width, msg.step, msg.data,
                                   bool(msg.is_bigendian))
        self._put(camera, msg.header, decode)

    def _on_compressed(self, camera: str, msg: CompressedImage) -> None:
        self._put(camera, msg.header, functools.partial(compressed_to_rgb, msg.format, msg.data))

    def _put(self, camera, header, decode) -> None:
        self.slots.put(Frame(camera, stamp_ns(header.stamp.sec, header.stamp.nanosec), header.frame_id, decode,
                             header))

    def _on_cloud(self, name: str, summarize, msg: PointCloud2) -> None:
        stats, buffer = self.sensors[name]
        stats.count("received")
        try:
            summary = summarize(msg)
        except CloudError as exc:
            stats.count("bad_inputs")
            self.get_logger().warning(f"skipping {name} cloud: {exc}", throttle_duration_sec=5.0)
            return
        if buffer.add(stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec), summary):
            stats.count("time_resets")
            self.get_logger().warning(f"{name} time jumped backwards (bag loop?): buffer reset",
                                      throttle_duration_sec=5.0)

    def _report(self, kind: str, camera: str, error: Exception) -> None:
        if kind == "bad_input":
            self.get_logger().warning(f"skipping {camera} frame: {error}", throttle_duration_sec=5.0)
        else:
            self.get_logger().error(f"captioning {camera} failed: {error}", throttle_duration_sec=5.0)

    def _publish(self, results: list[CaptionResult]) -> None:
        """Captions and markers of the whole batch first, then the (slower) overlays."""
        for result in results:
            caption_pub, marker_pub, _ = self.outputs[result.frame.camera]
            caption_pub.publish(String(data=json.dumps(result.record)))
            marker_pub.publish(fill_text_marker(Marker(), result.frame.header, result.frame.camera, result.caption,
                                                MarkerSettings.from_params(self.params)))
        for result in results:
            overlay_pub = self.outputs[result.frame.camera][2]
            if overlay_pub is not None and overlay_pub.get_subscription_count() > 0:
                pixels = draw_caption(result.image, result.caption)
                msg = Image(header=result.frame.header, height=pixels.shape[0], width=pixels.shape[1],
                            encoding="rgb8", step=pixels.shape[1] * 3)
                msg.data = array.array("B")
                msg.data.frombytes(pixels)  # one copy; assigning bytes costs one more, a numpy array ~100x more
                overlay_pub.publish(msg)

    def _on_worker_died(self) -> None:
        self._publish_diagnostics()  # ERROR now, not at the next timer tick
        raise WorkerDied(f"caption worker stopped: {type(self.worker.died).__name__}: {self.worker.died}")

    def _publish_diagnostics(self) -> None:
        now = self.get_clock().now()
        statuses = [self.diagnostics.camera(stats) for stats in self.slots.stats.values()]
        ages = {}
        for name, (stats, buffer) in self.sensors.items():
            newest = buffer.newest_stamp_ns
            ages[name] = (stats, None if newest is None or now.nanoseconds == 0 else (now.nanoseconds - newest) / 1e9)
        p = self.params
        statuses.append(self.diagnostics.node(p.backend, p.model, p.device, p.precision, ages, self.worker.died))
        array = DiagnosticArray(status=[
            DiagnosticStatus(level=bytes([s.level]), name=s.name, message=s.message, hardware_id=s.hardware_id,
                             values=[KeyValue(key=k, value=v) for k, v in s.values.items()])
            for s in statuses])
        array.header.stamp = now.to_msg()
        self.diagnostics_pub.publish(array)

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == "prompt":
                if parameter.type_ != Parameter.Type.STRING:
                    return SetParametersResult(successful=False, reason="prompt must be a string")
                self.worker.prompt = parameter.value
                self.get_logger().info(f"prompt is now {parameter.value!r}")
        return SetParametersResult(successful=True)

    def destroy_node(self) -> None:
        if self.worker is not None and not self.worker.stop():
            self.get_logger().error("the caption worker did not stop within 30 s (a hung inference?)")
        super().destroy_node()


def run(stop, args=None) -> int:
    """Run caption_node until `stop.requested` (SIGINT/SIGTERM: 0), a startup error or a dead worker (1).

    `stop` is shutdown.StopRequest, installed before this module (rclpy, torch) was imported; the entry point
    ends the process with the exit code returned here.
    """
    node = None
    exit_code = 0
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = CaptionNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        stop.starting = False
        # Python runs signal handlers between bytecodes only: spin in short slices so a stop is seen within 0.1 s.
        while not stop.requested and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except STARTUP_ERRORS as exc:
        rclpy.logging.get_logger("caption_node").fatal(str(exc))
        exit_code = 1
    except WorkerDied as exc:
        rclpy.logging.get_logger("caption_node").fatal(f"{exc}; exiting so that a supervisor restarts the node")
        exit_code = 1
    except (StartInterrupted, ExternalShutdownException):
        pass
    finally:
        stop.starting = False
        if node is not None:
            node.destroy_node()  # stops the worker first
        rclpy.try_shutdown()
    return exit_code
