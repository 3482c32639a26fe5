# Two entry points for a fresh machine: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check -q
DEMO_OUT ?= demo_out

.PHONY: install test demo clean

# Idempotent: pip skips what is already satisfied. The ros extra (rclpy wheels) lets `make test` run the
# ROS 2 node against a real middleware.
# torch==2.13.0 is the local CPU build; the official sam2 goes in without its deps (torchvision has no
# CPU build here and the video predictor does not need it), so pip never resolves a CUDA torch.
install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev,ros,ray]" "onnx>=1.16" "hydra-core>=1.3.2" "omegaconf>=2.2,<2.4" \
		"antlr4-python3-runtime==4.9.3" "iopath>=0.1.10" "polygraphy>=0.49" "onnx-graphsurgeon>=0.5"
	# sam2 last: a --no-deps install runs no conflict check, so pip does not print its resolver "ERROR ...
	# sam2 requires torchvision" (torchvision is deliberately absent: see above)
	SAM2_BUILD_CUDA=0 $(PIP) install --no-deps sam2==1.1.0

test: install
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/python -m sam2rt.demo --out $(DEMO_OUT)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
