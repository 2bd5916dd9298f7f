"""Health of the caption pipeline as plain (level, message, key/values), for /diagnostics.

Levels follow diagnostic_msgs/DiagnosticStatus: a camera that sends nothing for `stale_after_s` is STALE; bad
inputs or model failures since the last report are WARN/ERROR, and so are frames that arrive far slower than the
camera publishes them (lost in transport, or a publisher whose QoS cannot match; input_qos.transport_problem says
why and how to fix it). The node turns these into DiagnosticStatus.
"""

from __future__ import annotations

from dataclasses import dataclass

from .input_qos import transport_problem
from .stats import CameraStats, SensorStats

OK, WARN, ERROR, STALE = 0, 1, 2, 3


@dataclass(frozen=True)
class Status:
    name: str
    hardware_id: str
    level: int
    message: str
    values: dict[str, str]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


class DiagnosticsReporter:
    """Remembers the previous report's counters, so a problem is reported while it happens, not forever after."""

    def __init__(self, node_name: str, stale_after_s: float):
        self.node_name = node_name
        self.stale_after_s = stale_after_s
        self._previous: dict[str, dict[str, int]] = {}

    def camera(self, stats: CameraStats, reliability: str = "") -> Status:
        """`reliability`: what the camera's subscription requests now (reported, and named in a QoS problem)."""
        counts = stats.snapshot()
        before = self._previous.get(stats.camera, dict.fromkeys(counts, 0))
        self._previous[stats.camera] = counts
        silent = stats.silent_for()
        since = {name: counts[name] - before[name] for name in ("received", *CameraStats.TRANSPORT)}
        transport = transport_problem(since["received"], since["lost"], since["qos_incompatible"], reliability)
        if transport:
            level, message = WARN, transport
        elif silent is None:
            level, message = STALE, "no frames received yet"
        elif silent > self.stale_after_s:
            level, message = STALE, f"no frame for {silent:.1f} s"
        elif counts["failed"] > before["failed"]:
            level, message = ERROR, "the model failed on recent frames"
        elif counts["bad_inputs"] > before["bad_inputs"]:
            level, message = WARN, "bad input frames skipped"
        else:
            level, message = OK, "captioning"
        values = {name: str(value) for name, value in counts.items()}
        if reliability:
            values["subscription_reliability"] = reliability
        values.update({
            "received_hz": _fmt(stats.received_rate.rate_hz()),
            "captioned_hz": _fmt(stats.captioned_rate.rate_hz(), 2),
            "latency_total_p50_ms": _fmt(stats.total_ms.percentile(50)),
            "latency_total_p95_ms": _fmt(stats.total_ms.percentile(95)),
            "latency_inference_p50_ms": _fmt(stats.inference_ms.percentile(50)),
            "latency_inference_p95_ms": _fmt(stats.inference_ms.percentile(95)),
            "latency_queue_p50_ms": _fmt(stats.queue_ms.percentile(50)),
        })
        return Status(f"{self.node_name}: {stats.camera}", stats.camera, level, message, values)

    def node(self, backend: str, model: str, device: str, precision: str,
             sensors: dict[str, tuple[SensorStats, float | None]], worker_error: BaseException | None = None) -> Status:
        """`sensors` maps a sensor name to its stats and the age (s) of its newest stamp (None: none yet);
        `worker_error` is why the caption worker ended (ERROR: nothing is captioned any more)."""
        values = {"backend": backend, "model": model, "device": device, "precision": precision}
        level, problems = OK, []
        if worker_error is not None:
            level, problems = ERROR, [f"caption worker stopped: {type(worker_error).__name__}: {worker_error}"]
        for name, (stats, age_s) in sensors.items():
            before = self._previous.get(name, {"bad_inputs": 0})
            self._previous[name] = {"bad_inputs": stats.bad_inputs}
            values.update({
                f"{name}_received": str(stats.received),
                f"{name}_bad_inputs": str(stats.bad_inputs),
                f"{name}_time_resets": str(stats.time_resets),
                f"{name}_age_s": _fmt(age_s, 3),
            })
            if age_s is None or age_s > self.stale_after_s:
                level, problems = max(level, WARN), [*problems, f"{name} silent"]
            elif stats.bad_inputs > before["bad_inputs"]:
                level, problems = max(level, WARN), [*problems, f"bad {name} clouds skipped"]
        return Status(self.node_name, model, level, "; ".join(problems) or "running", values)
