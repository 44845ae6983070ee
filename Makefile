# The two commands of the README. Both install what is missing first and are safe to re-run.
SHELL := /bin/bash
export CARGO_INCREMENTAL ?= 0
DEMO_VIDEO := .deps/media/demo_people.mp4
DEMO_CAST := .deps/media/demo_cast
DEMO_OUT := runs/demo

.PHONY: setup setup-gpu build demo test


setup:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust 1.95 (rustup) first" >&2; exit 1; }
	bash scripts/setup

# Not part of setup: the CUDA build of ONNX Runtime and the CUDA/cuDNN libraries (about 1.6 GB of
# wheels from PyPI), for --provider auto|cuda on a machine with an NVIDIA GPU (README, "Run on a GPU").
setup-gpu: setup
	bash scripts/setup_gpu

build: setup
	cargo build --release

demo: build
	./target/release/episode-run harvest $(DEMO_VIDEO) --stride 2 --seeds $(DEMO_CAST) --out $(DEMO_OUT)
	@echo
	@echo "outputs in $(DEMO_OUT)/: faces.jsonl embeddings.npy people.jsonl manifest.json progress.json"
	@echo "try: jq -c '{person_id, name, screen_time_s}' $(DEMO_OUT)/people.jsonl; jq .counts $(DEMO_OUT)/manifest.json"
	@echo "report: $(abspath $(DEMO_OUT))/report.html"

test: setup
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --no-fail-fast; \
	else \
		cargo test --no-fail-fast; \
	fi
