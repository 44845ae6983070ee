# The two commands of the README. Both install what is missing first and are safe to re-run.
SHELL := /bin/bash
export CARGO_INCREMENTAL ?= 0
DEMO_VIDEO := .deps/media/astronaut_pan.mp4
DEMO_OUT := runs/demo

.PHONY: setup build demo test


setup:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust 1.95 (rustup) first" >&2; exit 1; }
	bash scripts/setup

build: setup
	cargo build --release

demo: build
	./target/release/episode-run harvest $(DEMO_VIDEO) --stride 2 --out $(DEMO_OUT)
	@echo
	@echo "outputs in $(DEMO_OUT)/: faces.jsonl embeddings.npy manifest.json progress.json"
	@echo "try: head -n 2 $(DEMO_OUT)/faces.jsonl; jq .counts $(DEMO_OUT)/manifest.json"

test: setup
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --no-fail-fast; \
	else \
		cargo test --no-fail-fast; \
	fi
