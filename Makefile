# hesslab — two commands do everything: `make lab` and `make test`. Each creates .venv and installs on first use.
#
# torch: the CPU wheel by default (small, fast to install). On a CUDA machine choose the build yourself, e.g.
#   make test TORCH_SPEC=torch        (PyPI's Linux wheel of torch is a CUDA build)
# A torch that is already in .venv is kept as it is.

PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP      := $(VENV)/.hesslab-installed
# curvlinops (a baseline of the tests and benchmarks), always with --no-deps: it requires backpack-for-pytorch, which
# requires torchvision, which would replace the CPU torch with a multi-GB CUDA build. What curvlinops imports
# (einops, einconv, linear_operator, opt-einsum) is in the test extra; backpack is not imported by curvlinops' K-FAC.
CURVLINOPS_SPEC ?= curvlinops-for-pytorch==3.0.1

NOTEBOOKS  := $(wildcard notebooks/[0-9]*.py)
BUILT_NB   := build/notebooks
# JupyterLab settings (the .py notebooks open as notebooks), shared with Binder
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json

# make test-browser: Debian's Chromium (Playwright's own browser download is not used) and Playwright's driver
CHROMIUM        ?= /usr/bin/chromium
PLAYWRIGHT_SPEC ?= playwright==1.65.2
# make gallery: the executed notebooks, then the static site
GALLERY_NB := build/gallery
SITE       := site

.PHONY: lab test lint test-unit test-doctests test-notebooks test-browser browser-deps notebooks gallery thumbnails bench bench-sinkhorn bench-pde bench-operators bench-optim bench-distributed bench-inverse bench-training bench-kfac clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[lab,test]"
	$(PY) -m pip install --quiet --no-deps "$(CURVLINOPS_SPEC)"
	touch $(STAMP)

## make lab: JupyterLab on notebooks/ (the .py notebooks open as notebooks)
lab: $(STAMP) $(LAB_SETTINGS)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

$(LAB_SETTINGS): binder/overrides.json $(STAMP)
	mkdir -p $(dir $@)
	cp binder/overrides.json $@

## make test: the whole suite: the docstrings' examples, the unit tests, then every notebook run top to bottom by nbval
test: $(STAMP) notebooks
	$(PY) -m pytest --doctest-modules hesslab -q
	$(PY) -m pytest tests $(BUILT_NB) --nbval-lax --nbval-current-env

## make lint: ruff (pyflakes, pycodestyle, import order, pydocstyle's Google convention; pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .

## make notebooks: notebooks/NN_topic.py (jupytext percent format) -> build/notebooks/NN_topic.ipynb
notebooks: $(STAMP)
	rm -rf $(BUILT_NB) && mkdir -p $(BUILT_NB)
	for nb in $(NOTEBOOKS); do \
	  $(VENV)/bin/jupytext --quiet --to ipynb --output $(BUILT_NB)/$$(basename $$nb .py).ipynb $$nb || exit 1; \
	done

## make test-browser: each notebook opened in JupyterLab in headless Chromium, run, a slider moved, the figure
## checked to change; screenshots in build/browser/. Installs Chromium (apt) and Playwright (pip) when missing.
test-browser: $(STAMP) $(LAB_SETTINGS) browser-deps
	HESSLAB_CHROMIUM=$(CHROMIUM) $(PY) -m pytest tests/browser

browser-deps: $(STAMP)
	@test -x $(CHROMIUM) || { \
	  sudo=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$sudo apt-get -o DPkg::Lock::Timeout=600 update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium; }
	$(PY) -m pip install --quiet "$(PLAYWRIGHT_SPEC)"

## make gallery: every notebook executed (paper sizes on a GPU, quick on a CPU; HESSLAB_SCALE overrides) and
## written as HTML with its figures to site/, with site/index.html listing paper, phenomenon and thumbnail
gallery: notebooks
	$(PY) docs/gallery.py $(BUILT_NB) --executed $(GALLERY_NB) --site $(SITE)

## make thumbnails: docs/thumbnails/NN_topic.png (for the README table) from the gallery's executed notebooks
thumbnails: gallery
	$(PY) docs/make_thumbnails.py $(GALLERY_NB) --out docs/thumbnails

test-unit: $(STAMP)
	$(PY) -m pytest tests

test-doctests: $(STAMP)
	$(PY) -m pytest --doctest-modules hesslab

test-notebooks: notebooks
	$(PY) -m pytest $(BUILT_NB) --nbval-lax --nbval-current-env --durations=0

## make bench: benchmarks/curvature.py against PyHessian, curvlinops and torch.func (not part of the tests).
## The baselines go in with --no-deps: backpack (a curvlinops dependency) requires torchvision, which would
## replace the CPU torch with a multi-GB CUDA build.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) -m pip install --quiet --no-deps pyhessian==0.1 backpack-for-pytorch==1.7.1 "$(CURVLINOPS_SPEC)"
	$(PY) benchmarks/curvature.py $(ARGS)

## make bench-sinkhorn / bench-pde: benchmarks/sinkhorn.py against POT 0.9, benchmarks/pde.py (256x256 Newton)
bench-sinkhorn: $(STAMP)
	$(PY) benchmarks/sinkhorn.py $(ARGS)

bench-pde: $(STAMP)
	$(PY) benchmarks/pde.py $(ARGS)

## make bench-operators: benchmarks/batched_operators.py (products over 3 batches against the concatenated batch)
bench-operators: $(STAMP)
	$(PY) benchmarks/batched_operators.py $(ARGS)

## make bench-optim: benchmarks/optim.py, one AdaHessian / Sophia step against one torch.optim.Adam step
bench-optim: $(STAMP)
	$(PY) benchmarks/optim.py $(ARGS)

## make bench-distributed: benchmarks/distributed.py, 2 ranks x 1 thread (gloo) against 1 process x 1 thread
bench-distributed: $(STAMP)
	$(PY) benchmarks/distributed.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build site hesslab.egg-info

## make bench-inverse: benchmarks/inverse.py, the M-FAC Woodbury product against CG, GPTQ against round-to-nearest
bench-inverse: $(STAMP)
	$(PY) benchmarks/inverse.py $(ARGS)

## make bench-training: benchmarks/training.py, a warm-started sharpness measurement against a cold top_eigen and
## PyHessian's eigenvalues() on notebook 07's net mid-training
bench-training: $(STAMP)
	$(PY) -m pip install --quiet --no-deps pyhessian==0.1
	$(PY) benchmarks/training.py $(ARGS)

## make bench-kfac: benchmarks/kfac.py, K-FAC factors and products against a gradient, an HVP and curvlinops' K-FAC
bench-kfac: $(STAMP)
	$(PY) benchmarks/kfac.py $(ARGS)
