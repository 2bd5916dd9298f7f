"""package.xml covers what the vehicle package imports, so `rosdep install` leaves no tool broken.

Rule: every third-party module that blip_caption_ros imports (at module level or inside a function) maps to a
rosdep key declared in package.xml (IMPORT_KEYS, keys as rosdistro's rosdep/base.yaml and python.yaml spell them),
or, where rosdistro has no key, to the pip command of the README's "Dependencies: rosdep and pip" section.
An import without a key is tolerated only when it is an optional backend imported lazily inside a function (the
package works without it) AND its pip distribution is named in that README command; a module-level import without
a key fails, because the package cannot even be imported without it.
"""

import ast
import re
import sys
import xml.etree.ElementTree as ET

from test.support import REPO

PACKAGE_DIR = REPO / "blip_caption_ros"
#: import name -> rosdep key (ROS packages by their package name)
IMPORT_KEYS = {
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces", "rosgraph_msgs": "rosgraph_msgs", "std_msgs": "std_msgs",
    "sensor_msgs": "sensor_msgs", "visualization_msgs": "visualization_msgs", "diagnostic_msgs": "diagnostic_msgs",
    "lifecycle_msgs": "lifecycle_msgs",
    "geometry_msgs": "geometry_msgs", "launch": "launch", "launch_ros": "launch_ros",
    "numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "PIL": "python3-pil",
    "tqdm": "python3-tqdm", "torch": "python3-torch", "transformers": "python3-transformers-pip",
    "huggingface_hub": "python3-huggingface-hub-pip", "rosbags": "python3-rosbags-pip",
}
#: import name -> pip distribution, for imports rosdistro has no key for
PIP_DISTRIBUTIONS = {"onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "openvino": "openvino",
                     "safetensors": "safetensors", "msgspec": "msgspec", "mcap": "mcap", "zstandard": "zstandard",
                     "tokenizers": "tokenizers"}


def _imports() -> dict[str, set[str]]:
    """Third-party top-level module -> {"module", "lazy"}: where blip_caption_ros imports it."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        module_level = {id(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "blip_caption_ros":
                    continue
                found.setdefault(top, set()).add("module" if id(node) in module_level else "lazy")
    return found


def _declared_keys() -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {e.text.strip() for tag in ("depend", "exec_depend") for e in root.iter(tag)}


def _readme_pip_packages() -> set[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Dependencies: rosdep and pip"):]
    section = section[: section.index("\n#", 1)]
    packages = set()
    for line in re.findall(r"^\s*(?:\S*/)?pip3? install ([^\n#]+)", section, re.MULTILINE):
        packages |= {re.split(r"[<>=\[;]", word)[0].lower() for word in line.split() if not word.startswith("-")}
    return packages


def test_every_import_of_the_vehicle_package_has_a_rosdep_key_or_the_readme_pip_line():
    imports, declared, pip_line = _imports(), _declared_keys(), _readme_pip_packages()
    assert {"rclpy", "numpy", "cv2", "rosbags", "torch"} <= set(imports)  # the scan sees the package
    problems = []
    for module, where in sorted(imports.items()):
        key = IMPORT_KEYS.get(module)
        if key is not None:
            if key not in declared:
                problems.append(f"{module}: rosdep key {key} missing from package.xml")
        elif where == {"lazy"} and PIP_DISTRIBUTIONS.get(module) in pip_line:
            continue  # optional backend, installed with pip as the README says
        else:
            problems.append(f"{module} (imported at {'/'.join(sorted(where))} level) has no rosdep key and is not an "
                            "optional backend named in the README's pip command")
    assert not problems, problems


def test_readme_pip_command_covers_what_rosdistro_lacks():
    pip_line = _readme_pip_packages()
    # install_requires of setup.py without a rosdep key
    assert {"safetensors", "msgspec"} <= pip_line
    assert {"onnxruntime", "tensorrt"} <= pip_line  # optional backends


def test_package_xml_keys_are_imports_or_known_runtime_needs():
    """No stale keys: each declared key is the key of an import, a ROS package the launch files or messages need,
    or one the README explains (pillow for transformers' image processor, mcap-ros2-support for blip-demo)."""
    explained = {"python3-pil", "mcap-ros2-support", "geometry_msgs", "launch", "launch_ros"}
    used = {IMPORT_KEYS[m] for m in _imports() if m in IMPORT_KEYS}
    assert _declared_keys() - used - explained == set()
