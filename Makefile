# Two entry points: `make demo` and `make test`. Both build .venv from scratch when absent.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip -q --disable-pip-version-check
STAMP := $(VENV)/.installed

BENCH := .venv-bench

.PHONY: demo test docs lint clean browser bench-env wheel-check

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The benchmarks' msseg: installed as users install it (no test extras; [torch] for SCT's .h5
# models, exported to ONNX at import). In .venv, the test extra nnunetv2 brings dicom2nifti ->
# pydicom, which nibabel then imports (0.1 s per start).
$(BENCH)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(BENCH)
	$(BENCH)/bin/pip -q --disable-pip-version-check install --upgrade pip
	$(BENCH)/bin/pip -q --disable-pip-version-check install torch==2.13.0
	$(BENCH)/bin/pip -q --disable-pip-version-check install -c constraints.txt -e '.[torch]'
	touch $@

bench-env: $(BENCH)/.installed

demo: $(STAMP)
	$(BIN)/msseg demo

# The QC page is tested in a real browser: Debian's chromium and chromium-driver, driven by
# Selenium (installed when missing and apt-get can run, i.e. as root; otherwise that one test
# is skipped with its reason).
browser:
	@command -v chromedriver >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  chromium-driver >/dev/null) || echo "chromium not installed: the QC browser test will be skipped"; }

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks recipes tools
	$(BIN)/python tests/wheel_check.py
	$(BIN)/pytest -q

# The documentation site: pages generated from the code and the results' files, pictures made
# from ../shared/data, then MkDocs with --strict (a broken link or anchor fails) into site/.
docs: $(STAMP) browser
	$(BIN)/python tools/docs_pages.py
	$(BIN)/python tools/docs_pictures.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The wheel users install, built and tried in fresh venvs (core without torch, then [all]).
wheel-check: $(STAMP)
	$(BIN)/python tests/wheel_check.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks recipes tools

clean:
	rm -rf $(VENV) $(BENCH) build site *.egg-info src/*.egg-info
