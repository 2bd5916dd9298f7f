# Developer and CI entry points. Each target creates .venv/ (Python 3.11, exact pins from requirements-dev.txt)
# on first use, so a fresh machine needs nothing but Python and make.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The ROS-facing tests (real rclpy and DDS) that run again in the torch-free vehicle environments: node, bag replay,
# fuzz, faults, lifecycle, managed (lifecycle) node, QoS, startup, encodings end to end, the launch logic, the Fast DDS
# profile variable, and the torch-free checks themselves.
ROS_TESTS := test/test_node_pipeline.py test/test_node_startup.py test/test_node_lifecycle.py \
	test/test_node_faults.py test/test_node_fuzz.py test/test_node_encodings.py test/test_bag_replay.py \
	test/test_launch_args.py test/test_launch_config.py test/test_node_managed.py test/test_node_qos.py \
	test/test_torch_free.py
# The vehicles' Pythons: Jazzy's (Ubuntu 24.04) and Humble's (Ubuntu 22.04). Both run the Jazzy wheels of
# requirements-jazzy.txt (Humble has none on PyPI), without torch, on the onnxruntime backend.
JAZZY_PYTHON := 3.12
HUMBLE_PYTHON := 3.10
# The tiny model's blip-export, made once with torch in .venv for the environments that cannot export.
TEST_EXPORT := runs/test-export
OUT ?= runs/demo

# DDS stays on loopback with a domain and ROS_HOME of its own (tests override these per process).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 42
export ROS_HOME ?= $(CURDIR)/runs/ros_home
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test test-fast test-jazzy test-humble-python test-vehicles lint java venv bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'
	touch $@

# The torch-free vehicle environments, one venv per Python (.venv-py312, .venv-py310) from requirements-jazzy.txt.
# A missing interpreter fails under CI=true and is skipped with a message otherwise.
.venv-py%/.installed: requirements-jazzy.txt setup.py
	@version=$$(echo $* | sed 's/^3/3./'); \
	if ! interpreter=$$(scripts/find_python.sh $$version); then \
	  if [ "$${CI:-}" = true ]; then echo "CI: Python $$version is required for the vehicle tests" >&2; exit 1; fi; \
	  echo "skipping the Python $$version environment: no python$$version here"; exit 0; \
	fi; \
	test -x .venv-py$*/bin/python || $$interpreter -m venv .venv-py$*; \
	.venv-py$*/bin/python -m pip install -q -r requirements-jazzy.txt 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'; \
	.venv-py$*/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'; \
	touch $@

$(TEST_EXPORT)/onnx/onnx_manifest.json: $(VENV)/.installed
	rm -rf $(TEST_EXPORT)
	$(PY) -m test.tiny_export $(TEST_EXPORT) 2>&1 | grep -v "pre-processing before quantization" || true
	test -f $@

# ROS_DISTRO=jazzy as a Jazzy install's setup script sets it (the launch logic picks the Fast DDS variable from it):
# the wheels are Jazzy's on both Pythons.
.PRECIOUS: .venv-py%/.installed $(TEST_EXPORT)/onnx/onnx_manifest.json
test-py%: .venv-py%/.installed $(TEST_EXPORT)/onnx/onnx_manifest.json
	@if [ -x .venv-py$*/bin/python ]; then \
	  ROS_DISTRO=jazzy BLIP_TEST_EXPORT=$(CURDIR)/$(TEST_EXPORT)/onnx .venv-py$*/bin/python -m pytest $(ROS_TESTS); \
	fi

# Jazzy on its own Python, and Humble's Python on the same wheels.
test-jazzy: test-py$(subst .,,$(JAZZY_PYTHON))
test-humble-python: test-py$(subst .,,$(HUMBLE_PYTHON))
test-vehicles: test-jazzy test-humble-python

# METEOR and the PTB tokenizer of pycocoevalcap run on Java.
java:
	@if ! command -v java >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Java (default-jre-headless) for METEOR..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null; \
	  else \
	    echo "Java is missing: METEOR needs it. Install it with: sudo apt-get install default-jre-headless" >&2; exit 1; \
	  fi; \
	fi

demo: venv java
	$(PY) -m blip_train.demo --out $(OUT)

lint: venv
	$(PY) -m ruff check .

test: venv java lint
	$(PY) -m pytest

# The edit-test loop (a few minutes on 2 cores): unit tests and the small integration tests, real rclpy included;
# the runs of whole processes, trainings and node scenarios are marked `slow` and left to `make test`.
test-fast: venv java
	$(PY) -m pytest -m "not slow"

bench: venv
	$(PY) -m bench.parse_labels

clean:
	rm -rf build install log runs .pytest_cache
