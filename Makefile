# pixelprior from a fresh clone, on a machine that has only python3 (with venv and pip):
#   make demo   train a small class-conditional PixelCNN on the built-in binarized digits (a few minutes on
#               2 CPU cores), write samples.png (one row per digit 0-9) and print the test bits/dim
#   make test   run the test suite
#   make lint   ruff check + format check
# Each target creates the virtual environment .venv once (a stamp file marks it done).
#
# torch is installed FIRST and pinned: a bare `torch` requirement on Linux pulls a multi-GB CUDA build. Override
# the spec for another build, e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.pixelprior-installed

# The demo: a class-conditional Gated PixelCNN (gated_pixelcnn_mnist, shrunk) on mnist5k binarized; samples.png
# holds one row per digit 0-9 (DEMO_PER_CLASS samples each), drawn at DEMO_TEMPERATURE. The settings and what they
# reach (test bits/dim, how often a classifier recognizes the digits): README.md, "What `make demo` does".
DEMO_DIR ?= demo-output
DEMO_MODEL_KWARGS ?= {"num_classes": 10, "hidden_channels": 32, "num_layers": 6}
DEMO_STEPS ?= 1500
DEMO_BATCH ?= 16
DEMO_LR ?= 3e-3
DEMO_TEMPERATURE ?= 1.0
DEMO_PER_CLASS ?= 10

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e ".[test,dev]"
	touch $@

demo: $(STAMP)
	$(BIN)/pixelprior train --model gated_pixelcnn_mnist --model_kwargs '$(DEMO_MODEL_KWARGS)' \
		--dataset mnist5k --binarize --output_dir $(DEMO_DIR) --overwrite_output_dir \
		--max_steps $(DEMO_STEPS) --batch_size $(DEMO_BATCH) --learning_rate $(DEMO_LR) --seed 0
	$(BIN)/pixelprior sample --pipeline $(DEMO_DIR) --per_class $(DEMO_PER_CLASS) --temperature $(DEMO_TEMPERATURE) \
		--output samples.png --scale 3 --seed 0
	@$(BIN)/python -c "import json; r = json.load(open('$(DEMO_DIR)/train_results.json')); \
		print(f\"demo: test bits/dim {r['test_bits_per_dim']:.4f} ({r['test_nll_nats']:.2f} nats/image), \
	samples in samples.png, pipeline in $(DEMO_DIR)/\")"

test: $(STAMP) lint
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) $(DEMO_DIR) samples.png
