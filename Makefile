# The README's two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: run test bootstrap build screenshots bench-reference

bootstrap:
	scripts/bootstrap.sh

## Build (release, tuned for this CPU) and run llmtop's main job.
run: bootstrap
	cargo build --release
	./target/release/llmtop $(ARGS)

## The whole test suite: format, lints, unit + integration + end-to-end tests.
test: bootstrap
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo test

build:
	cargo build --release
