# Two entry points for a fresh machine: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check -q
DEMO_OUT ?= demo_out

.PHONY: install test demo clean edgetam-env samurai-env

# Idempotent: pip skips what is already satisfied. The ros extra (rclpy wheels) lets `make test` run the
# ROS 2 node against a real middleware.
# torch==2.13.0 is the local CPU build; the official sam2 goes in without its deps (torchvision has no
# CPU build here and the video predictor does not need it), so pip never resolves a CUDA torch.
install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev,ros,ray,everything]" "onnx>=1.16" "hydra-core>=1.3.2" "omegaconf>=2.2,<2.4" \
		"antlr4-python3-runtime==4.9.3" "iopath>=0.1.10" "polygraphy>=0.49" "onnx-graphsurgeon>=0.5"
	# sam2 last: a --no-deps install runs no conflict check, so pip does not print its resolver "ERROR ...
	# sam2 requires torchvision" (torchvision is deliberately absent: see above)
	SAM2_BUILD_CUDA=0 $(PIP) install --no-deps sam2==1.1.0

# EdgeTAM's reference (edgetam-dimos: the EdgeTAM repository's `sam2` package) has the same import name as
# sam2==1.1.0, so it gets its own venv; EdgeTAM is exported there (sam2rt installed editable, no deps). Every
# package goes in with --no-deps so pip never resolves a CUDA torch: torchvision (timm imports it for RepViT) is
# PyPI's CUDA-built wheel, whose Python half is all timm uses (export/edgetam_model.py says how it imports).
# Cached: a stamp file marks a finished install; it is redone only when the Makefile or pyproject.toml is newer.
EDGETAM_VENV := .venv-edgetam
EDGETAM_PIP := $(EDGETAM_VENV)/bin/pip --disable-pip-version-check -q
EDGETAM_STAMP := $(EDGETAM_VENV)/.installed
edgetam-env: $(EDGETAM_STAMP)
$(EDGETAM_STAMP): Makefile pyproject.toml
	test -x $(EDGETAM_VENV)/bin/python || $(PYTHON) -m venv $(EDGETAM_VENV)
	$(EDGETAM_PIP) install torch==2.13.0
	$(EDGETAM_PIP) install --no-deps edgetam-dimos==1.0.1 timm==1.0.31 torchvision==0.28.0
	$(EDGETAM_PIP) install "numpy>=1.24" "onnxruntime>=1.18" "opencv-python-headless>=4.8" "tqdm>=4.60" \
		"pillow>=10" "onnx>=1.16" "hydra-core>=1.3.2" "omegaconf>=2.2,<2.4" "antlr4-python3-runtime==4.9.3" \
		"iopath>=0.1.10" "polygraphy>=0.49" "onnx-graphsurgeon>=0.5" "onnxconverter-common>=1.16" pyyaml safetensors huggingface_hub "pytest>=8"
	$(EDGETAM_PIP) install --no-deps -e .
	touch $@

# The EdgeTAM tests need its reference, so they run a second time in its venv (in .venv they skip).
test: install edgetam-env samurai-env
	$(BIN)/python -m pytest -q
	$(EDGETAM_VENV)/bin/python -m pytest -q tests/edgetam

demo: install
	$(BIN)/python -m sam2rt.demo --out $(DEMO_OUT)

clean:
	rm -rf $(VENV) $(EDGETAM_VENV) $(SAMURAI_VENV) $(DEMO_OUT) .pytest_cache

# SAMURAI's reference (issue 22): its sdist installs SAMURAI's fork of sam2 into the `sam2` import name, so it
# gets its own venv and never touches sam2==1.1.0 in .venv. Same CPU torch; --no-deps keeps pip from
# resolving torchvision (a CUDA torch); scipy (its kalman_filter.py) and loguru (its video predictor) are what it imports beyond sam2.
SAMURAI_VENV := .venv-samurai
samurai-env: $(SAMURAI_VENV)/.installed

# made once: present, it is skipped (delete the venv to remake it)
$(SAMURAI_VENV)/.installed:
	test -x $(SAMURAI_VENV)/bin/python || $(PYTHON) -m venv $(SAMURAI_VENV)
	$(SAMURAI_VENV)/bin/pip --disable-pip-version-check -q install torch==2.13.0 "numpy>=1.24.4" "scipy>=1.10" \
		"tqdm>=4.66.1" "hydra-core>=1.3.2" "omegaconf>=2.2,<2.4" "antlr4-python3-runtime==4.9.3" \
		"iopath>=0.1.10" "pillow>=9.4.0" "loguru>=0.7"
	SAM2_BUILD_CUDA=0 $(SAMURAI_VENV)/bin/pip --disable-pip-version-check -q install --no-deps absolutely-not-samurai==1.0.0
	touch $@
