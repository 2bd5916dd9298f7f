"""caption_node refuses to start on a mistake with one clear line and exit code 1, never a traceback."""

import pytest

from test.ros_helpers import NodeProcess

pytestmark = pytest.mark.ros


def _corrupt_model_dir(tmp_path):
    (tmp_path / "config.json").write_text("{ not json")
    return tmp_path


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        (lambda tmp: ["-p", "model:=/no/such/model"], "cannot load caption model '/no/such/model': no such directory"),
        (lambda tmp: ["-p", f"model:={_corrupt_model_dir(tmp)}"], "cannot load caption model '{tmp}'"),
        (lambda tmp: ["-p", "backend:=no-such-backend"], "unknown backend 'no-such-backend'"),
        (lambda tmp: ["-p", "image_transport:=h264", "-p", "cameras:=[front,front]"],
         "invalid parameters: image_transport='h264' is not one of raw, compressed; cameras=['front', 'front'] has "
         "duplicates"),
        (lambda tmp: ["-p", "max_sensor_offset_ms:=100"], "'max_sensor_offset_ms' to '100' of type 'INTEGER', "
                                                          "expecting type 'DOUBLE'"),
    ],
    ids=["missing-model", "corrupt-model", "unknown-backend", "bad-values", "int-for-double"],
)
@pytest.mark.slow
def test_startup_errors_end_the_node_with_one_line(tmp_path, make_args, expected):
    node = NodeProcess(*make_args(tmp_path))
    assert node.wait(timeout=60) == 1
    output = node.output()
    expected = expected.replace("{tmp}", str(tmp_path))
    error_lines = [line for line in output.splitlines() if "[FATAL]" in line]
    assert len(error_lines) == 1 and expected in error_lines[0], output
    assert "Traceback" not in output, output


@pytest.mark.parametrize("delay_s", [0.3, 1.5])
def test_a_signal_while_the_node_is_still_importing_or_loading_ends_it_cleanly(caption_model, delay_s):
    """SIGINT lands during the import of rclpy/torch (0.3 s) or while the model loads: exit 0, no traceback."""
    import signal
    import time

    node = NodeProcess(*caption_model.node_args)
    time.sleep(delay_s)
    node.process.send_signal(signal.SIGINT)
    code = node.wait(timeout=30)
    assert code == 0, node.output()
    assert "Traceback" not in node.output() and "KeyboardInterrupt" not in node.output(), node.output()


def test_a_signal_inside_a_finalizer_still_aborts_the_start():
    """A signal that lands in a __del__ (regex's Group.__del__ runs while transformers imports) must not be lost as
    "Exception ignored in ...": the start is aborted once the finalizer has returned."""
    import os
    import signal
    import time

    from blip_caption_ros.shutdown import StartInterrupted, StopRequest

    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    stop = StopRequest()
    finalized = []

    class SignalledWhileFinalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # bytecodes for the handler to run on, inside the finalizer
                pass
            finalized.append(True)

    try:
        with pytest.raises(StartInterrupted):
            SignalledWhileFinalized()  # finalized at once: the signal arrives inside __del__
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.001)
        assert finalized == [True] and stop.requested
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
