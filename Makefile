# The README's two commands. Both install everything first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
export MALLOC_MMAP_THRESHOLD_ = 17179869184
export MALLOC_TRIM_THRESHOLD_ = 17179869184

.PHONY: install repro test

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@if command -v apt-get >/dev/null && [ ! -d /usr/share/datasets/fashion-mnist ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist || \
		echo "dataset-fashion-mnist not installed: set data.source: download in the preset"; fi
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

repro: install
	. $(VENV)/bin/activate && dvc repro

test: install
	. $(VENV)/bin/activate && python -m pytest -q -n auto
