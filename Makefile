# Two commands do all the set-up on a fresh clone:
#   make lab    venv + install + Jupyter kernel, then JupyterLab on chapter 00
#   make test   the same set-up, then unit tests and strict nbval over notebooks/
#
# torch: by default `pip install torch==2.13.0`, which on a machine with the
# local CPU wheel takes that file. To choose another build (CUDA, say), either
# install torch into .venv yourself first (an existing torch is kept), or:
#   make lab TORCH="torch" TORCH_INDEX=https://download.pytorch.org/whl/cu128

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
STAMP  := $(VENV)/.qwqlearn-installed

# Quiet, offline, deterministic notebook runs.
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TRANSFORMERS_VERBOSITY := error
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0

.PHONY: setup lab test unit nbval notebooks student clean book browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || \
	  $(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --user --name qwqlearn --display-name "Python (qwqlearn)" >/dev/null
	touch $@

lab: setup
	$(BIN)/jupyter lab notebooks/00_welcome.ipynb

unit: setup
	$(BIN)/python -m pytest -q tests

nbval: setup
	$(BIN)/python -m pytest -q --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg notebooks

# Re-run chapters in place, outputs saved (what nbval then compares), widget state
# left out so GitHub renders them: after a change to qwqlearn/, `make notebooks NB=notebooks/04_*.ipynb`.
NB ?= notebooks/[0-9][0-9]_*.ipynb
notebooks: setup
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=600 \
	  --ExecutePreprocessor.store_widget_state=False --ExecutePreprocessor.record_timing=False $(NB)

# One pytest run: unit tests, then every notebook under strict nbval.
test: setup browser
	$(BIN)/python -m pytest -q --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg tests notebooks

# The course as a website: every notebooks/NN_*.ipynb with its committed outputs
# (nothing is executed) -> book/_build/html/index.html. Offline; incremental.
BOOK_NOTEBOOKS ?= notebooks
book: setup
	@$(BIN)/python -c "import jupyter_book, importlib.util as u; assert u.find_spec('sphinx-mathjax-offline')" 2>/dev/null || \
	  $(BIN)/python -m pip install -q "jupyter-book==1.0.4.post1" "sphinx-mathjax-offline==0.0.2"
	@$(BIN)/python book/build.py --notebooks $(BOOK_NOTEBOOKS)

# Headless Chromium for tests/test_book.py, from Debian (root only; else the test skips).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "browser: no chromium and not root: 'sudo make browser', or tests/test_book.py skips"

# Student copies for a workshop: solutions become stubs, outputs are cleared.
student: setup
	$(BIN)/qwqlearn student student/

clean:
	rm -rf $(VENV) build *.egg-info
