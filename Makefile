# Two entry points, each doing every set-up step it needs, idempotently:
#   make demo   set up, then run the demo
#   make test   set up, then run the whole test suite
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := demo

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo
PYTEST_ARGS ?=
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check
# The machine-wide pip config may name index folders that do not exist: drop that noise.
QUIET_PIP := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

# Mesa EGL (llvmpipe) renders the demo world headless; cmake and g++ build msg/.
APT_PACKAGES := cmake g++ libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgbm1
# Debian's own python3 needs python3-venv for `python3 -m venv`.
ifeq ($(shell $(PYTHON) -c 'import ensurepip' >/dev/null 2>&1 || echo missing),missing)
APT_PACKAGES += python3-venv
endif

MSG_SOURCES := $(wildcard msg/*.msg) $(wildcard srv/*.srv) CMakeLists.txt package.xml $(wildcard cmake/*.cmake) \
	$(wildcard interfaces/tf2_msgs/*) $(wildcard interfaces/tf2_msgs/msg/*) tools/build_msgs.sh

.PHONY: demo test setup apt clean distclean

setup: apt $(VENV)/.installed pram_ros/msg/__init__.py

apt:
	@tools/ensure_apt.sh $(APT_PACKAGES)

# torch first, on its own: the local CPU wheel, so nothing later pulls a CUDA build.
$(VENV)/.installed: requirements.txt requirements-ros.txt constraints.txt setup.py setup.cfg | apt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0 $(QUIET_PIP)
	$(PIP) -r requirements.txt -r requirements-ros.txt -c constraints.txt $(QUIET_PIP)
	$(PIP) --no-deps --no-build-isolation -e . $(QUIET_PIP)
	touch $@

pram_ros/msg/__init__.py: $(MSG_SOURCES) $(VENV)/.installed
	tools/build_msgs.sh
	touch $@

# The demo, each step reused when its output is already there: render the world (with
# rosbag2 recordings), build the map of its mapping sequence with the recorded poses and
# train its recognizer; then replay each query bag in real time through a running
# pram_node over DDS and print its accuracy, latency and rate (reports in demo/reports/),
# then one table over the sequences.
DEMO_SEQUENCES ?= query_offpath query_lighting foreign
DEMO_RATE ?= 1.0

$(DEMO_DIR)/world/world.yaml: | setup
	rm -rf $(DEMO_DIR)/world
	$(BIN)/pram world --out $(DEMO_DIR)/world

# One process builds the map and trains its recognizer: training reuses the build's features.
$(DEMO_DIR)/map.npz $(DEMO_DIR)/map.recognizer.safetensors &: $(DEMO_DIR)/world/world.yaml
	$(BIN)/pram map build --images $(DEMO_DIR)/world/mapping/images --poses $(DEMO_DIR)/world/mapping/poses.tum \
		--out $(DEMO_DIR)/map.npz --train --overwrite
	$(BIN)/pram map info $(DEMO_DIR)/map.npz

demo: setup $(DEMO_DIR)/map.recognizer.safetensors
	for sequence in $(DEMO_SEQUENCES); do \
		$(BIN)/pram eval --live --map $(DEMO_DIR)/map.npz --bag $(DEMO_DIR)/world/$$sequence/bag \
			--rate $(DEMO_RATE) --threads 2 --out $(DEMO_DIR)/reports/$$sequence; \
	done
	@echo; $(BIN)/pram report $(addprefix $(DEMO_DIR)/reports/,$(DEMO_SEQUENCES))

# pytest exits 5 when it collected no tests: that is a failure too.
test: setup
	@rc=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf build pram_ros/msg pram_ros/srv pram_ros/*.so .pytest_cache

distclean: clean
	rm -rf $(VENV) $(DEMO_DIR)
