"""caption_node: camera frames in, captions with matched LiDAR/radar summaries out. ROS wiring only.

Topics (relative, remappable), per camera <cam>:
  in   <cam>/image (sensor_msgs/Image) or <cam>/image/compressed (CompressedImage); lidar/points, radar/points
       (sensor_msgs/PointCloud2); keep-last 5, volatile, reliability `best_available`: each subscription follows
       its publishers (reliable when all are reliable, else best effort; input_qos says why)
  out  <cam>/caption (std_msgs/String, JSON), <cam>/caption/marker (visualization_msgs/Marker),
       <cam>/caption/image (rgb8 overlay, built only while subscribed), /diagnostics; all reliable, so both
       reliable and best-effort subscribers match. Every output carries the source image's header.
Every subscription and publisher takes ROS 2's standard QoS overrides (history, depth, reliability), e.g.
`-p "qos_overrides./front/image.subscription.reliability:=best_effort"`.
The work happens in ROS-free modules: frame_slots (newest frame per camera), worker (batching, matching),
captioner (the model), sensors/sync (summaries, time matching), caption_message, overlay, diagnostics, lifecycle.

Caption settings (prompt, max_new_tokens, num_beams) default to what the model records (caption_settings); a value
given in a params file or with -p overrides it and is logged once at start.

One implementation, two nodes: `CaptionCore` holds the wiring; `CaptionNode` configures and activates it at once,
managed_node.ManagedCaptionNode drives it through the ROS 2 lifecycle. SIGINT (once or twice, as Ctrl-C under
`ros2 launch` delivers it) and SIGTERM stop either cleanly with exit code 0: the worker finishes its batch and stops
before the node and the rclpy context go away. Should the worker thread end on its own, /diagnostics turns ERROR at
once and the node exits 1, for launch `respawn` or systemd to restart it.
"""

from __future__ import annotations

import array
import functools
import inspect
import json
import threading

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSPolicyKind, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import InvalidQosOverridesError, QoSOverridingOptions
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import Marker

from .backends import ModelLoadError, load_captioner
from .backends.caption_settings import STOCK, CaptionSettingsError, model_caption_settings
from .caption_marker import MarkerSettings, fill_text_marker
from .caption_message import stamp_ns
from .diagnostics import DiagnosticsReporter, Status
from .frame_slots import Frame, FrameSlots
from .imaging import compressed_to_rgb, image_to_rgb
from .input_qos import BEST_EFFORT, RELIABLE, follow_publishers
from .lifecycle import ACTIVE, UNCONFIGURED, load_cancellably, parameter_change_problem, state_status
from .overlay import draw_caption
from .params import NodeParams, ParameterError
from .sensors import CloudError, summarize_lidar, summarize_radar
from .shutdown import StartInterrupted
from .stats import SensorStats
from .sync import SensorBuffer
from .worker import CaptionResult, CaptionWorker

try:  # Iron and later; Humble's rclpy names the module qos_event
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # pragma: no cover - Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

#: Not on Humble: there the inputs subscribe best effort unless overridden.
_BEST_AVAILABLE = getattr(ReliabilityPolicy, "BEST_AVAILABLE", None)
#: Iron and later report matched publishers as an event; Humble's inputs follow on the 1 s diagnostics tick only.
_MATCHED_EVENT = "matched" in inspect.signature(SubscriptionEventCallbacks).parameters
STARTUP_ERRORS = (ModelLoadError, ParameterError, CaptionSettingsError, InvalidParameterTypeException,
                  InvalidParameterValueException, InvalidQosOverridesError)
INPUT_QOS = QoSProfile(depth=5, reliability=_BEST_AVAILABLE or ReliabilityPolicy.BEST_EFFORT)
IMAGE_QOS = INPUT_QOS
OUTPUT_QOS = QoSProfile(depth=10)  # reliable, volatile: captions are small and every one matters to a recorder
OVERLAY_QOS = QoSProfile(depth=1)  # reliable keep-last-1 never blocks the worker on a slow viewer
_POLICIES = {RELIABLE: ReliabilityPolicy.RELIABLE, BEST_EFFORT: ReliabilityPolicy.BEST_EFFORT}


def _overridable() -> QoSOverridingOptions:
    return QoSOverridingOptions.with_default_policies()


class WorkerDied(RuntimeError):
    """The caption worker thread ended without being asked to: nothing would be captioned any more."""


class InputTopic:
    """One input subscription. Under reliability `best_available` (the default) it follows its publishers: the
    middleware resolves best_available only once, at creation, so `refresh()` re-checks them and re-subscribes."""

    def __init__(self, node: Node, msg_type, topic: str, callback, lost=None, incompatible=None):
        self.node, self.msg_type, self.topic, self.callback = node, msg_type, topic, callback
        self._lost, self._incompatible = lost, incompatible
        self._lock = threading.RLock()  # refresh (timer, QoS event) vs destroy (a lifecycle transition's thread)
        self._destroyed = False
        self.following = False  # decided once the QoS overrides are applied
        self.subscription = self._subscribe(INPUT_QOS, _overridable())
        requested = self.subscription.qos_profile.reliability
        self.following = _BEST_AVAILABLE is not None and requested == _BEST_AVAILABLE
        self.reliability = BEST_EFFORT if self.following else requested.name.lower()
        if self.following:  # best effort matches every publisher until refresh() knows better
            self._resubscribe(BEST_EFFORT)
            self.refresh()

    def _subscribe(self, qos: QoSProfile, options: QoSOverridingOptions):
        def incompatible(event):
            if self.following:
                self.refresh()  # a new publisher offers what we do not request: follow it now
            elif self._incompatible is not None:
                self._incompatible(event.total_count_change)

        callbacks = {"incompatible_qos": incompatible,
                      "message_lost": (lambda event: self._lost(event.total_count_change)) if self._lost else None}
        if _MATCHED_EVENT and self.following:  # a publisher came or went: follow it now, not at the next tick
            callbacks["matched"] = lambda event: self.refresh()
        events = SubscriptionEventCallbacks(**callbacks)
        return self.node.create_subscription(self.msg_type, self.topic, self.callback, qos,
                                             qos_overriding_options=options, event_callbacks=events)

    def _resubscribe(self, reliability: str) -> None:
        qos = QoSProfile(depth=INPUT_QOS.depth, reliability=_POLICIES[reliability])
        self.node.destroy_subscription(self.subscription)
        # History and depth overrides still apply; reliability is ours to choose while following.
        self.subscription = self._subscribe(qos, QoSOverridingOptions([QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH]))
        self.reliability = reliability

    def refresh(self) -> None:
        if not self.following:
            return
        with self._lock:
            if self._destroyed:
                return
            offered = [info.qos_profile.reliability.name.lower()
                       for info in self.node.get_publishers_info_by_topic(self.subscription.topic_name)]
            wanted = follow_publishers(offered, self.reliability)
            if wanted != self.reliability:
                self.node.get_logger().info(f"{self.subscription.topic_name}: publishers offer "
                                            f"{', '.join(offered)}: subscribing {wanted}")
                self._resubscribe(wanted)

    def destroy(self) -> None:
        with self._lock:
            self._destroyed = True
            self.node.destroy_subscription(self.subscription)


class CaptionPipeline:
    """What an active caption node runs: input subscriptions, output publishers and the caption worker."""

    def __init__(self, node: Node, params: NodeParams, captioner, prompt: str, on_worker_exit):
        self.node, self.params = node, params
        p = params
        self.slots = FrameSlots(p.cameras)
        self.inputs: list[InputTopic] = []
        self.camera_inputs: dict[str, InputTopic] = {}
        self.sensors: dict[str, tuple[SensorStats, SensorBuffer]] = {}
        lidar = self._subscribe_cloud("lidar", p.lidar_topic, functools.partial(
            summarize_lidar, settings=p.lidar_settings()))
        radar = self._subscribe_cloud("radar", p.radar_topic, functools.partial(
            summarize_radar, settings=p.radar_settings()))
        self.worker = CaptionWorker(
            self.slots, captioner, self._publish, self._report, prompt=prompt, lidar=lidar, radar=radar,
            max_sensor_offset_ms=p.max_sensor_offset_ms, max_rate_hz=p.max_rate_hz, on_exit=on_worker_exit)
        self.publishers = []
        self.outputs = {}
        for camera in p.cameras:
            self.outputs[camera] = (
                self._publisher(String, f"{camera}/caption", OUTPUT_QOS),
                self._publisher(Marker, f"{camera}/caption/marker", OUTPUT_QOS),
                self._publisher(Image, f"{camera}/caption/image", OVERLAY_QOS) if p.overlay else None,
            )
            stats = self.slots.stats[camera]
            counters = {"lost": functools.partial(stats.count, "lost"),
                        "incompatible": functools.partial(stats.count, "qos_incompatible")}
            if p.image_transport == "compressed":
                topic = InputTopic(node, CompressedImage, f"{camera}/image/compressed",
                                   functools.partial(self._on_compressed, camera), **counters)
            else:
                topic = InputTopic(node, Image, f"{camera}/image", functools.partial(self._on_image, camera),
                                   **counters)
            self.inputs.append(topic)
            self.camera_inputs[camera] = topic
        self.markers = MarkerSettings.from_params(p)

    def _publisher(self, msg_type, topic: str, qos: QoSProfile):
        publisher = self.node.create_publisher(msg_type, topic, qos, qos_overriding_options=_overridable())
        self.publishers.append(publisher)
        return publisher

    def _subscribe_cloud(self, name: str, topic: str, summarize) -> SensorBuffer | None:
        if not topic:
            return None
        buffer = SensorBuffer(keep_ns=int(self.params.sensor_buffer_s * 1e9))
        self.sensors[name] = (SensorStats(name), buffer)
        self.inputs.append(InputTopic(self.node, PointCloud2, topic,
                                      functools.partial(self._on_cloud, name, summarize)))
        return buffer

    def close(self) -> bool:
        """Stop the worker (its batch finishes), then remove every topic: nothing is published after this returns.
        False when the worker did not stop in time."""
        stopped = self.worker.stop()
        for topic in self.inputs:
            topic.destroy()
        for publisher in self.publishers:
            self.node.destroy_publisher(publisher)
        return stopped

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
            self.node.get_logger().warning(f"skipping {name} cloud: {exc}", throttle_duration_sec=5.0)
            return
        if buffer.add(stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec), summary):
            stats.count("time_resets")
            self.node.get_logger().warning(f"{name} time jumped backwards (bag loop?): buffer reset",
                                           throttle_duration_sec=5.0)

    def _report(self, kind: str, camera: str, error: Exception) -> None:
        if kind == "bad_input":
            self.node.get_logger().warning(f"skipping {camera} frame: {error}", throttle_duration_sec=5.0)
        else:
            self.node.get_logger().error(f"captioning {camera} failed: {error}", throttle_duration_sec=5.0)

    def _publish(self, results: list[CaptionResult]) -> None:
        """Captions and markers of the whole batch first, then the (slower) overlays."""
        for result in results:
            caption_pub, marker_pub, _ = self.outputs[result.frame.camera]
            caption_pub.publish(String(data=json.dumps(result.record)))
            marker_pub.publish(fill_text_marker(Marker(), result.frame.header, result.frame.camera, result.caption,
                                                self.markers))
        for result in results:
            overlay_pub = self.outputs[result.frame.camera][2]
            if overlay_pub is not None and overlay_pub.get_subscription_count() > 0:
                pixels = draw_caption(result.image, result.caption)
                msg = Image(header=result.frame.header, height=pixels.shape[0], width=pixels.shape[1],
                            encoding="rgb8", step=pixels.shape[1] * 3)
                msg.data = array.array("B")
                msg.data.frombytes(pixels)  # one copy; assigning bytes costs one more, a numpy array ~100x more
                overlay_pub.publish(msg)


class CaptionCore:
    """Parameters, model, pipeline and /diagnostics of one caption node, on the rclpy node it is given.

    configure (read and check the parameters, load the model), activate (CaptionPipeline), deactivate, cleanup:
    the plain node runs the first two at start; the managed node runs each on its lifecycle transition.
    `managed` makes the read-only parameters changeable while the node is unconfigured.
    """

    def __init__(self, node: Node, *, managed: bool):
        self.node = node
        self.managed = managed
        self.state = UNCONFIGURED
        self.failure = ""
        self.params: NodeParams | None = None
        self.captioner = None
        self.pipeline: CaptionPipeline | None = None
        self.worker_died: BaseException | None = None
        self.cancel_load = threading.Event()
        self._declared_model_settings = self._declare_parameters()
        self.prompt: str | None = None
        # Triggered from the worker thread if it dies; its callback (on the executor) reports and ends spinning.
        self._worker_died = node.create_guard_condition(self._on_worker_died)
        self.diagnostics = DiagnosticsReporter(node.get_fully_qualified_name(), 3.0)
        self.diagnostics_pub = node.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS,
                                                     qos_overriding_options=_overridable())
        self._timer = node.create_timer(1.0, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        node.add_on_set_parameters_callback(self._on_set_parameters)

    # --- parameters ---

    def _declare_parameters(self):
        """Declare every NodeParams parameter; those `from_model` default to what the model records (model is
        declared first). Returns those recorded settings, so configure can tell a default from a user's value."""
        values, recorded = {}, None
        for name, default, description, dynamic in NodeParams.specs():
            if name in NodeParams.from_model():
                recorded = recorded or self._recorded_settings(values["model"])
                default = getattr(recorded, name)
            value = list(default) if isinstance(default, tuple) else default
            descriptor = ParameterDescriptor(description=description, read_only=not (dynamic or self.managed))
            values[name] = self.node.declare_parameter(name, value, descriptor).value
        return recorded

    def _recorded_settings(self, model: str):
        try:
            return model_caption_settings(model)
        except CaptionSettingsError:
            if not self.managed:
                raise
            return STOCK  # the managed node reports it when it configures

    def read_params(self) -> NodeParams:
        """The parameters as they are now, checked (ParameterError, CaptionSettingsError); an unset caption
        setting follows the model, which the managed node may have been pointed at since it started."""
        values = {name: self.node.get_parameter(name).value for name, *_ in NodeParams.specs()}
        values["cameras"] = tuple(values["cameras"])
        recorded = model_caption_settings(values["model"])
        for name in NodeParams.from_model():
            if values[name] == getattr(self._declared_model_settings, name):
                values[name] = getattr(recorded, name)
        overrides = recorded.overrides(**{name: values[name] for name in NodeParams.from_model()})
        if overrides:
            self.node.get_logger().info(f"overriding the model's caption settings ({recorded.source}): "
                                        + "; ".join(overrides))
        return NodeParams(**values)

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        dynamic = {name: is_dynamic for name, _, _, is_dynamic in NodeParams.specs()}
        for parameter in parameters:
            if parameter.name not in dynamic:
                continue
            problem = parameter_change_problem(parameter.name, dynamic[parameter.name], self.state)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
            if parameter.name == "prompt" and parameter.type_ != Parameter.Type.STRING:
                return SetParametersResult(successful=False, reason="prompt must be a string")
        for parameter in parameters:
            if parameter.name == "prompt" and self.params is not None:
                self.prompt = parameter.value
                if self.pipeline is not None:
                    self.pipeline.worker.prompt = parameter.value
                self.node.get_logger().info(f"prompt is now {parameter.value!r}")
        return SetParametersResult(successful=True)

    # --- transitions ---

    def configure(self) -> None:
        """Read and check the parameters and load the model; raises a STARTUP_ERRORS error (or
        lifecycle.LoadCancelled, for the managed node) with a one-line reason, leaving nothing loaded."""
        self.cancel_load.clear()
        params = self.read_params()
        config = params.captioner_config()
        if self.managed:  # on a thread of its own, so a stop need not wait for a load of minutes
            captioner = load_cancellably(lambda: load_captioner(config), self.cancel_load)
        else:  # on the main thread, where a signal aborts it (shutdown.StartInterrupted)
            captioner = load_captioner(config)
        self.params, self.captioner, self.prompt = params, captioner, params.prompt
        self.diagnostics = DiagnosticsReporter(self.node.get_fully_qualified_name(), params.stale_timeout_s)
        p = params
        self.node.get_logger().info(
            f"loaded {p.model} on {p.backend}/{p.device}: {', '.join(p.cameras)} ({p.image_transport}), "
            f"prompt {p.prompt!r}, at most {p.max_new_tokens} tokens, {p.num_beams} beam(s)")

    def activate(self) -> None:
        self.pipeline = CaptionPipeline(self.node, self.params, self.captioner, self.prompt,
                                        on_worker_exit=lambda _reason: self._worker_died.trigger())
        self.pipeline.worker.start()
        self._timer.reset()  # the first report of the cameras one period after they were subscribed
        self.node.get_logger().info(f"captioning {', '.join(self.params.cameras)}")

    def deactivate(self) -> None:
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None and not pipeline.close():
            self.node.get_logger().error("the caption worker did not stop within 30 s (a hung inference?)")

    def cleanup(self) -> None:
        self.deactivate()
        self.captioner = self.params = None

    # --- diagnostics ---

    def _on_worker_died(self) -> None:
        self.worker_died = self.pipeline.worker.died if self.pipeline else RuntimeError("caption worker stopped")
        self._tick()  # ERROR now, not at the next timer tick
        raise WorkerDied(f"caption worker stopped: {type(self.worker_died).__name__}: {self.worker_died}")

    def _tick(self) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            for topic in pipeline.inputs:
                topic.refresh()
        self._publish_diagnostics(pipeline)

    def _publish_diagnostics(self, pipeline: CaptionPipeline | None) -> None:
        now = self.node.get_clock().now()
        name = self.node.get_fully_qualified_name()
        if pipeline is None:
            model = self.params.model if self.params else self.node.get_parameter("model").value
            statuses = [state_status(name, self.state, model, self.failure)]
        else:
            statuses = [self.diagnostics.camera(stats, pipeline.camera_inputs[camera].reliability)
                        for camera, stats in pipeline.slots.stats.items()]
            ages = {}
            for sensor, (stats, buffer) in pipeline.sensors.items():
                newest = buffer.newest_stamp_ns
                age = None if newest is None or now.nanoseconds == 0 else (now.nanoseconds - newest) / 1e9
                ages[sensor] = (stats, age)
            p = self.params
            node_status = self.diagnostics.node(p.backend, p.model, p.device, p.precision, ages, self.worker_died)
            if self.managed:
                node_status.values["lifecycle_state"] = ACTIVE
            statuses.append(node_status)
        self.diagnostics_pub.publish(_diagnostic_array(statuses, now))


def _diagnostic_array(statuses: list[Status], now) -> DiagnosticArray:
    array_msg = DiagnosticArray(status=[
        DiagnosticStatus(level=bytes([s.level]), name=s.name, message=s.message, hardware_id=s.hardware_id,
                         values=[KeyValue(key=k, value=v) for k, v in s.values.items()])
        for s in statuses])
    array_msg.header.stamp = now.to_msg()
    return array_msg


class CaptionNode(Node):
    """The plain node: configured and active from the start (STARTUP_ERRORS end it)."""

    def __init__(self, **kwargs):
        super().__init__("caption_node", **kwargs)
        self.core = CaptionCore(self, managed=False)
        self.core.configure()
        self.core.activate()
        self.core.state = ACTIVE

    @staticmethod
    def make_executor():
        return SingleThreadedExecutor()

    def stop(self) -> None:
        """Before destroy_node, on the main thread: stop the worker."""
        self.core.deactivate()


def run(stop, args=None, node_class=CaptionNode) -> int:
    """Run a caption node until `stop.requested` (SIGINT/SIGTERM: 0), a startup error or a dead worker (1).

    `stop` is shutdown.StopRequest, installed before this module (rclpy, torch) was imported; `node_class` is
    CaptionNode or managed_node.ManagedCaptionNode; the entry point ends the process with the exit code returned.
    """
    node = None
    exit_code = 0
    executor = None
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = node_class()
        executor = node.make_executor()
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
            node.core.cancel_load.set()  # a managed node abandons a model load in progress
            if executor is not None:
                executor.shutdown(timeout_sec=10.0)  # callbacks in flight (a transition) end first
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return exit_code
