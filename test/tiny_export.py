"""Write the tiny model's blip-export directory for the torch-free test environments (they cannot export):

    python test/tiny_export.py OUT      then      BLIP_TEST_EXPORT=OUT/onnx pytest ...

The same model and export options as conftest's tiny_blip_dir and tiny_export_dir.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import TINY_BLIP_WORDS, export_tiny  # noqa: E402

from blip_train.modeling import TINY, build_blip  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    build_blip(TINY_BLIP_WORDS, out / "tiny_blip", arch=TINY)
    export_tiny(out / "tiny_blip", out / "onnx")
    print(out / "onnx")
