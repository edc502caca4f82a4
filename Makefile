# Two commands a newcomer needs:  `make run` (set up + start the app)  and  `make test`.
# Both create or reuse the virtual environment in .venv.
# CPU=1 (e.g. `make run CPU=1`, best in a fresh .venv: `make clean-venv` first) installs the CPU-only
# PyTorch wheels from download.pytorch.org (requirements-cpu.txt; ~4 GB less than the default CUDA
# build); where that index cannot be reached it says so and installs the default requirements.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
CPU ?= 0
STAMP := $(VENV)/.installed$(if $(filter 1,$(CPU)),-cpu,)

.PHONY: setup run test test-fast gradio clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt requirements-cpu.txt pyproject.toml scripts/install_optional.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
ifeq ($(CPU),1)
	$(PY) -m pip install -r requirements-cpu.txt || { \
	  echo "note: the CPU-only wheels torch==2.14.1+cpu / torchvision==0.29.1+cpu are not available here" \
	       "(download.pytorch.org/whl/cpu unreachable?); installing the default build from requirements.txt"; \
	  $(PY) -m pip install -r requirements.txt; }
else
	$(PY) -m pip install -r requirements.txt
endif
	$(PY) -m pip install --no-deps -e .
	bash scripts/install_optional.sh $(PY)
	touch $@

# The app's safety settings (.streamlit/config.toml) as flags too: flags win over every config file
# and hold whatever folder the server starts in (tests/test_launch_settings.py keeps them in step).
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
STREAMLIT_FLAGS = --server.address 127.0.0.1 --server.port $(PORT) --server.headless true \
	--server.maxUploadSize 50 --server.maxMessageSize 200 --server.enableXsrfProtection true \
	--server.enableCORS true --server.fileWatcherType none --browser.gatherUsageStats false \
	--client.toolbarMode viewer --client.showErrorDetails none --runner.magicEnabled false

run: setup
	$(VENV)/bin/streamlit run $(ROOT)/app.py $(STREAMLIT_FLAGS)

gradio: setup
	$(PY) $(ROOT)/gradio_app.py

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

clean-venv:
	rm -rf $(VENV)
