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

.PHONY: lab test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[lab,test]"
	touch $(STAMP)

## make lab: JupyterLab on notebooks/ (the .py notebooks open as notebooks)
lab: $(STAMP)
	mkdir -p notebooks
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

## make test: the whole suite
test: $(STAMP)
	$(PY) -m pytest

## make bench: benchmarks/curvature.py against PyHessian, curvlinops and torch.func (not part of the tests).
## The baselines go in with --no-deps: backpack (a curvlinops dependency) requires torchvision, which would
## replace the CPU torch with a multi-GB CUDA build.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) -m pip install --quiet --no-deps pyhessian==0.1 backpack-for-pytorch==1.7.1 curvlinops-for-pytorch==3.0.1
	$(PY) benchmarks/curvature.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build site hesslab.egg-info
