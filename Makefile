# Two commands for a fresh machine (the README's first screen):
#
#   make quickstart   .venv with the pinned torch/torchvision pair if missing, the project
#                     installed, suites/quickstart.yaml run, the report's path printed
#   make test         the same environment (the deploy extra included: ONNX, ONNX
#                     Runtime), Debian's chromium, Fashion-MNIST and PostgreSQL for the
#                     tests (where apt-get is there and we are root), then the README's
#                     test command
#
# Both are idempotent: the install is remembered by a stamp file in .venv named after a
# checksum of pyproject.toml and the torch pair, so the second run goes straight to work,
# and editing pyproject.toml reinstalls. Nothing here needs git (a source archive works).
# Variables: PYTHON (the interpreter that creates the venv), VENV, TORCH_PAIR, PYTEST_ARGS.

PYTHON ?= python3
VENV ?= .venv
# torch and torchvision pinned as a pair that belongs together (an unpinned torchvision
# pulls in its own torch); see the README, "Install".
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?= -n 2

PY := $(VENV)/bin/python
INSTALL_KEY := $(shell { echo '$(TORCH_PAIR)'; cat pyproject.toml; } | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(INSTALL_KEY)

.PHONY: help install quickstart test system-packages

help:
	@echo "make quickstart   install into $(VENV) (first time only) and run suites/quickstart.yaml"
	@echo "make test         install, get chromium and Fashion-MNIST (Debian), run the tests"
	@echo "make install      only the install step"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install $(TORCH_PAIR)
	$(PY) -m pip install -e '.[test,deploy]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

quickstart: install
	$(PY) -m bench run suites/quickstart.yaml
	@echo "The report: $(CURDIR)/reports/index.html (open it in a browser; it works offline)"

# Debian packages the tests use, installed where apt-get is there and we are root: chromium
# drives the report's browser tests, dataset-fashion-mnist feeds the real-data test,
# postgresql serves the shared-study test (it starts a server of its own in a temporary
# folder and creates its database there); each skips with a message without them.
# --no-install-recommends: otherwise apt upgrades systemd. A failed install (no network, a
# package the sources lack) does not stop the tests either: the tests that need it skip.
system-packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing=" chromium"; \
	[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing="$$missing dataset-fashion-mnist"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's$$missing for the tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } || \
		echo "could not install$$missing: the tests that need it will skip"; \
	else \
		echo "missing$$missing and no apt-get as root to install it: those tests will skip"; \
	fi

test: install system-packages
	$(PY) -m pytest $(PYTEST_ARGS)
