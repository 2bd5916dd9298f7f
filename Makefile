# Developer and CI entry points. Each target creates .venv/ (Python 3.11, exact pins from requirements-dev.txt)
# on first use, so a fresh machine needs nothing but Python and make.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
JAZZY_VENV := .venv-jazzy
JAZZY_PY := $(JAZZY_VENV)/bin/python
# The ROS-facing tests (real rclpy and DDS) that run again on the Jazzy wheels: node, bag replay, fuzz, faults,
# lifecycle, managed (lifecycle) node, startup, encodings end to end, the launch logic and the Fast DDS profile variable.
ROS_TESTS := test/test_node_pipeline.py test/test_node_startup.py test/test_node_lifecycle.py \
	test/test_node_faults.py test/test_node_fuzz.py test/test_node_encodings.py test/test_bag_replay.py \
	test/test_launch_args.py test/test_launch_config.py test/test_node_managed.py test/test_node_qos.py
OUT ?= runs/demo

# DDS stays on loopback with a domain and ROS_HOME of its own (tests override these per process).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 42
export ROS_HOME ?= $(CURDIR)/runs/ros_home
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test test-fast test-jazzy lint java venv venv-jazzy bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'
	touch $@

# Second distro: the same code on the ROS 2 Jazzy wheels (requirements-jazzy.txt) in a venv of its own.
venv-jazzy: $(JAZZY_VENV)/.installed

$(JAZZY_VENV)/.installed: requirements-jazzy.txt requirements-dev.txt setup.py
	test -x $(JAZZY_PY) || $(PYTHON) -m venv $(JAZZY_VENV)
	$(JAZZY_PY) -m pip install -q -r requirements-jazzy.txt 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'
	$(JAZZY_PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'
	touch $@

# ROS_DISTRO as a Jazzy install's setup script sets it (the launch logic picks the Fast DDS variable from it).
test-jazzy: venv-jazzy
	ROS_DISTRO=jazzy $(JAZZY_PY) -m pytest $(ROS_TESTS)

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
	$(PY) bench/parse_labels.py

clean:
	rm -rf build install log runs .pytest_cache
