# exactly — the two commands are `make demo` and `make test`; the rest are their parts.
# Tools (Kubernetes control plane, etcd, kwok, helm, Kafka) are cached outside the repo in
# $EXACTLY_TOOLS_DIR (default ~/.cache/exactly), keyed by the versions in tools/versions.env.

CARGO ?= cargo
DEMO_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help tools build demo env test unit integration faults pulsar lint fmt crds

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

tools: ## install the pinned environment into the cache (seconds when already there)
	@tools/install.sh

build: ## build the operator and the environment binaries
	$(CARGO) build -p exactly -p exactly-worker -p exactly-testenv --bins

demo: tools build image ## local control plane + Kafka, the operator (the chart's pod on the real node), the quick-start, a Pipeline, their status (DEMO_ARGS=--once for one pass)
	./target/debug/exactly-demo $(DEMO_ARGS)

env: tools build ## start the environment in the foreground and print KUBECONFIG and the Kafka address
	./target/debug/exactly-env

# The operator image, built without a daemon (tools/image/build.py): an OCI archive that
# `skopeo copy oci-archive:target/image/exactly.oci.tar docker://<registry>/exactly:<tag>` pushes
# and the environment's real node imports. The Dockerfile builds the same layout with Docker.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMAGE ?= ghcr.io/exactly-dev/exactly:$(VERSION)
IMAGE_ARCHIVE ?= target/image/exactly.oci.tar
.PHONY: image

image: tools ## the operator image (operator + worker, release build) as an OCI archive in target/image/
	$(CARGO) build --release --locked -p exactly -p exactly-worker
	python3 tools/image/build.py --out $(IMAGE_ARCHIVE) --ref $(IMAGE) \
	  --base "$$(tools/install.sh --print-image-base)" \
	  --file target/release/exactly:/exactly \
	  --file target/release/exactly-worker:/usr/local/bin/exactly-worker \
	  --entrypoint '["/exactly"]' --cmd '["run","--log-format","json","--leader-elect"]' \
	  --user 65532:65532 --expose 8080

test: tools image ## every test: unit tests, then integration and fault tests on the real environment, then the Pulsar tests
	$(CARGO) test --workspace --lib --bins
	$(CARGO) build -p exactly-worker -p exactly --bins
	$(CARGO) test -p exactly-testenv --test integration
	$(CARGO) test -p exactly-testenv --test faults
	$(CARGO) test -p exactly-testenv --test pulsar

unit: ## unit tests only (no environment)
	$(CARGO) test --workspace --lib --bins

integration: tools image ## integration tests only (one shared environment for the run)
	$(CARGO) test -p exactly-testenv --test integration

faults: tools ## fault tests only (their own environment: a broker restart, killed workers)
	$(CARGO) build -p exactly-worker -p exactly --bins
	$(CARGO) test -p exactly-testenv --test faults

pulsar: tools ## Pulsar tests only (their own Pulsar standalone, no Kubernetes or Kafka)
	$(CARGO) test -p exactly-testenv --test pulsar

lint: ## formatting and clippy, warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

crds: ## regenerate crds/ and charts/exactly/crds/ from the Rust types (a unit test fails when they are stale)
	$(CARGO) run -q -p exactly -- crds --out-dir crds
	$(CARGO) run -q -p exactly -- crds --out-dir charts/exactly/crds

# The pinned helm from the tools cache (override with HELM=...).
HELM ?= $(or $(EXACTLY_TOOLS_DIR),$(HOME)/.cache/exactly)/helm-v$(shell sed -n 's/^HELM_VERSION=//p' tools/versions.env)/bin/helm
CHART := charts/exactly
.PHONY: chart

chart: tools ## lint the Helm chart and render it with its main value sets (the integration tests apply them)
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set 'watchNamespaces={team-a,team-b}'
	$(HELM) template exactly $(CHART) --namespace exactly-system >/dev/null
	$(HELM) template exactly $(CHART) --namespace exactly-system --set 'watchNamespaces={team-a,team-b}' >/dev/null
	$(HELM) template exactly $(CHART) --namespace exactly-system --set metrics.serviceMonitor.enabled=true --set networkPolicy.enabled=true --set networkPolicy.egress.allowAll=false >/dev/null
	$(HELM) template exactly $(CHART) --namespace exactly-system --set grafana.dashboard.enabled=true >/dev/null

# The Pipeline worker's benchmark: measures and prints, asserts nothing. Options of the driver
# go in BENCH_ARGS (e.g. BENCH_ARGS='--records 200000 --workers 2'; `--help` lists them).
BENCH_ARGS ?=
.PHONY: bench-pipeline

bench-pipeline: ## worker copy rate and latency vs Kafka's perf tools and Kafka Streams EOS (also target/bench-pipeline.json)
	$(CARGO) build --release -p exactly-worker --bin exactly-worker
	$(CARGO) build -p exactly-testenv --bin exactly-bench-pipeline
	./target/debug/exactly-bench-pipeline --worker target/release/exactly-worker $(BENCH_ARGS)

# The operator at scale (issue #10): N Topics at once to Ready, one change while steady and while
# pending, RSS, and the steady state's API writes, CPU and Kafka requests, for each of
# BENCH_ARGS='--sizes 1000,10000' (the default). Measures and prints, asserts nothing.
.PHONY: bench-scale

bench-scale: ## the operator with 1 000 and 10 000 Topics: time to Ready, single-change latency, RSS, steady-state cost (also target/bench-scale.json)
	$(CARGO) build --release -p exactly --bin exactly
	$(CARGO) build -p exactly-testenv --bin exactly-bench-scale
	./target/debug/exactly-bench-scale --operator target/release/exactly $(BENCH_ARGS)
