# Two entry points for a fresh machine: `make run` (the app) and `make test` (the suite).
# Both create .venv and install what is missing; running them again installs nothing.

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.deps-stamp
PYTEST_ARGS ?=

# Debian packages: venv for Python, PortAudio for sounddevice, espeak-ng (fallback voice), Xvfb and the
# xcb libraries Qt needs for a real X display, EGL/GL/fontconfig and a font for Qt itself.
APT_PKGS := python3-venv libportaudio2 libasound2 espeak-ng xvfb xauth \
            libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
            libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-randr0 \
            libxcb-shape0 libxcb-xinerama0 libxcb-xfixes0 libegl1 libgl1 \
            libfontconfig1 libdbus-1-3 libglib2.0-0 fonts-dejavu-core

.PHONY: run test deps system-deps clean-venv

run: deps
	$(VENV)/bin/livecc-desktop

test: deps
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

deps: system-deps $(STAMP)

# apt only where we are root and something is missing (idempotent, no-op on a set-up machine).
system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "apt: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "warning: missing system packages (install them as root):$$missing"; fi; \
	fi

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# CPU machines take the CPU torch wheel (2.13.0, on disk here); a CUDA machine takes pip's default.
$(STAMP): $(VENV)/bin/python pyproject.toml Makefile tts/install.py
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  $(PY) -m pip install -q torch; \
	else $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e ".[engine,test,serve]"
	@# Speech: ChatTTS' pure-Python deps, then ChatTTS itself without CUDA torchaudio (tts/install.py says why)
	$(PY) -m pip install -q -e ".[speech]"
	$(PY) -m tts.install
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
