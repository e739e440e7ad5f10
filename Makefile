# Developer shortcuts. Each target is a one-liner over cargo or scripts/; `make` lists them.
# CI does not use this file: it runs scripts/test (see .ci/run).

CARGO ?= cargo

.DEFAULT_GOAL := help
.PHONY: help fmt lint test test-quick services services-stop generate bench dev

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

fmt: ## format the workspace
	$(CARGO) fmt --all

lint: ## rustfmt check + clippy with warnings as errors (no services needed)
	scripts/test --quick

test: ## everything CI runs: installs, services, fmt, clippy, nextest, doc tests
	scripts/test

test-quick: ## unit and integration tests only, against already running services
	eval "$$(scripts/services env)" && $(CARGO) nextest run --workspace --locked

services: ## start RabbitMQ, Redis, PostgreSQL, NATS, Prometheus and leave them running
	scripts/services start

services-stop: ## stop the services `make services` started
	scripts/services stop

generate: ## regenerate the committed CRDs (manifests/crds/) from the Rust types
	scripts/generate

bench: ## run the benchmarks (starts the services they need)
	scripts/bench

dev: ## run the embedded sandbox control plane (tidescale dev) for kubectl
	$(CARGO) run --locked -- dev
