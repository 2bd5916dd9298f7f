"""caption_node refuses to start on a mistake with one clear line and exit code 1, never a traceback."""

import pytest
from ros_helpers import NodeProcess

pytestmark = pytest.mark.ros


def _corrupt_model_dir(tmp_path):
    (tmp_path / "config.json").write_text("{ not json")
    return tmp_path


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        (lambda tmp: ["-p", "model:=/no/such/model"], "cannot load caption model '/no/such/model': no such directory"),
        (lambda tmp: ["-p", f"model:={_corrupt_model_dir(tmp)}"], "cannot load caption model '{tmp}'"),
        (lambda tmp: ["-p", "backend:=openvino"], "unknown backend 'openvino'"),
        (lambda tmp: ["-p", "image_transport:=h264", "-p", "cameras:=[front,front]"],
         "invalid parameters: image_transport='h264' is not one of raw, compressed; cameras=['front', 'front'] has "
         "duplicates"),
        (lambda tmp: ["-p", "max_sensor_offset_ms:=100"], "'max_sensor_offset_ms' to '100' of type 'INTEGER', "
                                                          "expecting type 'DOUBLE'"),
    ],
    ids=["missing-model", "corrupt-model", "unknown-backend", "bad-values", "int-for-double"],
)
def test_startup_errors_end_the_node_with_one_line(tmp_path, make_args, expected):
    node = NodeProcess(*make_args(tmp_path))
    assert node.wait(timeout=60) == 1
    output = node.output()
    expected = expected.replace("{tmp}", str(tmp_path))
    error_lines = [line for line in output.splitlines() if "[FATAL]" in line]
    assert len(error_lines) == 1 and expected in error_lines[0], output
    assert "Traceback" not in output, output
