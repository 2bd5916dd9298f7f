"""The tests' tiny random BLIP and its blip-export, defined once for conftest's fixtures and for the torch-free test
environments, which cannot export and get the export made here (`make test-jazzy` runs this with torch first):

    python -m test.tiny_export OUT      then      BLIP_TEST_EXPORT=OUT/onnx pytest ...
"""

from __future__ import annotations

import sys
from pathlib import Path

TINY_BLIP_WORDS = ("a", "picture", "of", "car", "cars", "road", "street", "city", "highway", "rain", "night", "day",
                   "truck", "person", "traffic", "light", "sign", "clear", "snow", "fog", "parked", "driving")


def build_tiny(out: Path) -> Path:
    """A random tiny BLIP captioner saved with save_pretrained (weights + processor) in `out`."""
    from blip_train.modeling import TINY, build_blip

    build_blip(TINY_BLIP_WORDS, out, arch=TINY)
    return out


def export_tiny(checkpoint: Path, out: Path) -> Path:
    """blip-export of the tiny model with its int8 variant."""
    from blip_train.export import ExportOptions, export

    export(ExportOptions(checkpoint=str(checkpoint), out=str(out), samples=3, int8=True))
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1])
    print(export_tiny(build_tiny(root / "tiny_blip"), root / "onnx"))
