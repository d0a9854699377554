# `make demo` and `make test` each create .venv when it is missing, install the package, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg
export TQDM_DISABLE := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: demo test test-fast install sample-data lab lint format bench clean-runs

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	@echo "installing dino_lib and its dependencies into $(VENV) (first time: a few minutes)"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]" > $(VENV)/pip.log 2>&1 || (grep -v "is ignored: it is neither" $(VENV)/pip.log; exit 1)
	$(PY) -c "import torch, torchvision, timm, dino_lib; print('installed: torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__)"
	touch $(STAMP)

install: $(STAMP)

sample-data: $(STAMP)
	$(PY) -m dino_lib.sample_data

demo: $(STAMP)
	$(PY) tools/demo/run.py --out runs/demo

# JupyterLab from .venv on 127.0.0.1 (token-protected: open the printed URL), opened at notebooks/. Progress bars and
# inline figures stay on: the TQDM_DISABLE / MPLBACKEND exports above are for batch runs only. Extra server options:
# make lab LAB_ARGS="--port 8899 --no-browser" (as root, e.g. in a container, Jupyter also needs --allow-root).
LAB_ARGS ?=
lab: $(STAMP)
	env -u TQDM_DISABLE -u MPLBACKEND $(PY) -m jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=$(CURDIR) \
		--LabApp.default_url=/lab/tree/notebooks $(LAB_ARGS)

# Without Chromium (and no way to install it) the browser test is reported as skipped with the reason;
# with CI=true (set by .ci/run) a missing browser fails the run instead.
test: $(STAMP)
	bash tools/install_browser.sh || { [ "$${CI:-}" != "true" ] || exit 1; \
		echo "make test: Chromium unavailable; the JupyterLab browser test will be reported as skipped"; }
	$(PY) -m pytest -p no:cacheprovider tests

test-fast: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -m "not slow and not ui and not ddp and not notebook" tests

lint: $(STAMP)
	$(PY) -m ruff check dino_lib tests benchmarks tools
	$(PY) -m ruff format --check dino_lib tests benchmarks tools

format: $(STAMP)
	$(PY) -m ruff format dino_lib tests benchmarks tools
	$(PY) -m ruff check --fix dino_lib tests benchmarks tools

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean-runs:
	rm -rf runs/ci
