# wasmhook — one entry point for every routine task.
# `make test` on a fresh machine does all set-up (the wasm target included).

CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
# The image's binary: static, so the image needs no libc (deploy/Containerfile).
MUSL_TARGET := x86_64-unknown-linux-musl

.PHONY: all setup build examples test e2e kube-tier registry-test registry-tier image image-binary image-context image-test image-tier image-push soak fuzz bench bench-audit lint fmt clippy doc run clean

all: build

## setup: install the Rust target the policies are compiled for (idempotent)
setup:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)
	@rustup target list --installed | grep -qx '$(MUSL_TARGET)' || rustup target add $(MUSL_TARGET)

## build: the server and every policy component
build: setup
	$(CARGO) build --workspace

## examples: the Python and JavaScript example policies, built into components
## (installs the pinned componentize-py, jco and componentize-js into target/policy-tools/)
examples:
	python3 policies/examples/build.py

## test: every unit, integration and end-to-end test, every benchmark once (no
## timing), the policies' own test suites (wasmhook test), a 20-second soak, and
## the tiers against a real kube-apiserver and a real OCI registry, and the server
## image under podman, where their binaries are found
test: setup examples
	$(CARGO) test --workspace
	python3 tests/bench/load.py --smoke
	$(CARGO) run --quiet --bin wasmhook -- test policies
	$(CARGO) build --workspace --bins
	$(CARGO) run --quiet -p wasmhook-tests --bin wasmhook-soak -- --duration 20s
	@$(MAKE) --no-print-directory kube-tier
	@$(MAKE) --no-print-directory registry-tier
	@$(MAKE) --no-print-directory image-tier

# The real API server's binaries (tests/support/kube.rs): KUBE_APISERVER and ETCD,
# else found on PATH.
KUBE_APISERVER ?= $(shell command -v kube-apiserver 2>/dev/null)
ETCD ?= $(shell command -v etcd 2>/dev/null)
KUBE_TIER_HOW := set KUBE_APISERVER and ETCD (or put kube-apiserver and etcd on PATH): etcd from \
	Debian's etcd-server package, kube-apiserver v1.28 built from the Kubernetes sources (../shared/NOTES-k8s.md)

## e2e: the tests against a real kube-apiserver v1.28 and etcd on loopback (tests/kube)
e2e: setup
	@if [ -z "$(KUBE_APISERVER)" ] || [ -z "$(ETCD)" ]; then echo "make e2e: $(KUBE_TIER_HOW)" >&2; exit 2; fi
	KUBE_APISERVER=$(KUBE_APISERVER) ETCD=$(ETCD) $(CARGO) test -p wasmhook-tests --test kube -- --test-threads 2

# A step of make test: the kube tier where its binaries are found, else how to enable it.
kube-tier:
	@if [ -n "$(KUBE_APISERVER)" ] && [ -n "$(ETCD)" ]; then \
		$(MAKE) --no-print-directory e2e; \
	else \
		echo "== kube tier (tests/kube) not run: $(KUBE_TIER_HOW); then run make e2e"; \
	fi

# The registry tier's binaries (tests/support/registry.rs): REGISTRY_BINARY (CNCF
# distribution, v2.8), else docker-registry on PATH; skopeo on PATH.
REGISTRY_BINARY ?= $(shell command -v docker-registry 2>/dev/null)
SKOPEO := $(shell command -v skopeo 2>/dev/null)
REGISTRY_TIER_HOW := apt-get install docker-registry skopeo (or set REGISTRY_BINARY to a CNCF distribution \
	registry v2.8 binary)

## registry-test: the tests against a real OCI registry (CNCF distribution, TLS and
## basic auth) on loopback, checked with skopeo (tests/registry)
registry-test: setup examples
	@if [ -z "$(REGISTRY_BINARY)" ] || [ -z "$(SKOPEO)" ]; then echo "make registry-test: $(REGISTRY_TIER_HOW)" >&2; exit 2; fi
	REGISTRY_BINARY=$(REGISTRY_BINARY) $(CARGO) test -p wasmhook-tests --test registry -- --test-threads 2

# make test's last step: the registry tier where its binaries are found, else how to enable it.
registry-tier:
	@if [ -n "$(REGISTRY_BINARY)" ] && [ -n "$(SKOPEO)" ]; then \
		$(MAKE) --no-print-directory registry-test; \
	else \
		echo "== registry tier (tests/registry) not run: $(REGISTRY_TIER_HOW); then run make registry-test"; \
	fi

# The image (deploy/Containerfile): a static musl release binary, stripped, and Debian's CA
# bundle, FROM scratch, built with podman. IMAGE overrides the reference (deploy/base's
# `images:` entry names the same one).
IMAGE ?= ghcr.io/wasmhook/wasmhook:0.1.0
PODMAN ?= $(shell command -v podman 2>/dev/null)
MUSL_GCC := $(shell command -v musl-gcc 2>/dev/null)
# podman on these machines: crun refuses hybrid cgroups, and podman's default rlimits exceed
# the hard limits (../shared/NOTES-containers.md).
PODMAN_FLAGS ?= --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096
IMAGE_CONTEXT := target/image
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# The commit, with -dirty when the working tree has changes (the image is then not that commit).
REVISION := $(shell git describe --always --dirty --abbrev=40 --match=no-tag 2>/dev/null)
IMAGE_TIER_HOW := apt-get install podman runc buildah musl-tools ca-certificates, then make setup (adds the \
	$(MUSL_TARGET) Rust target)

## image: the server image $(IMAGE) FROM scratch (podman; deploy/Containerfile)
image: image-context
	@if [ -z "$(PODMAN)" ]; then echo "make image: $(IMAGE_TIER_HOW)" >&2; exit 2; fi
	$(PODMAN) build $(PODMAN_FLAGS) -f deploy/Containerfile -t $(IMAGE) \
		--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) $(IMAGE_CONTEXT)
	@$(PODMAN) image inspect $(IMAGE) --format '$(IMAGE): {{.Size}} bytes'

# The static binary (`cargo build --release --target $(MUSL_TARGET)`: musl-gcc builds
# mimalloc and ring), stripped into the image's build context with the CA bundle.
image-binary: setup
	@if [ -z "$(MUSL_GCC)" ]; then echo "make image: musl-gcc not found: $(IMAGE_TIER_HOW)" >&2; exit 2; fi
	$(CARGO) build --release --target $(MUSL_TARGET) --bin wasmhook

image-context: image-binary
	@mkdir -p $(IMAGE_CONTEXT)
	strip -o $(IMAGE_CONTEXT)/wasmhook target/$(MUSL_TARGET)/release/wasmhook
	cp $(CA_BUNDLE) $(IMAGE_CONTEXT)/ca-certificates.crt

## image-test: the image under podman as deploy/base's Deployment runs it, against a real
## kube-apiserver, and make image-push to a real registry (tests/image; needs the kube and
## registry tiers' binaries too)
image-test: image
	@if [ -z "$(KUBE_APISERVER)" ] || [ -z "$(ETCD)" ]; then echo "make image-test: $(KUBE_TIER_HOW)" >&2; exit 2; fi
	@if [ -z "$(REGISTRY_BINARY)" ] || [ -z "$(SKOPEO)" ]; then echo "make image-test: $(REGISTRY_TIER_HOW)" >&2; exit 2; fi
	IMAGE=$(IMAGE) KUBE_APISERVER=$(KUBE_APISERVER) ETCD=$(ETCD) REGISTRY_BINARY=$(REGISTRY_BINARY) \
		$(CARGO) test -p wasmhook-tests --test image -- --test-threads 2

# A step of make test: the image tier where podman, buildah, musl-gcc, the musl target and
# the kube tier's binaries are found, else how to enable it.
BUILDAH := $(shell command -v buildah 2>/dev/null)
MUSL_TARGET_INSTALLED := $(shell rustup target list --installed 2>/dev/null | grep -x '$(MUSL_TARGET)')
image-tier:
	@if [ -n "$(PODMAN)" ] && [ -n "$(BUILDAH)" ] && [ -n "$(MUSL_GCC)" ] && [ -n "$(MUSL_TARGET_INSTALLED)" ] \
		&& [ -n "$(KUBE_APISERVER)" ] && [ -n "$(ETCD)" ] && [ -n "$(REGISTRY_BINARY)" ] && [ -n "$(SKOPEO)" ]; then \
		$(MAKE) --no-print-directory image-test; \
	else \
		echo "== image tier (tests/image) not run: $(IMAGE_TIER_HOW); $(KUBE_TIER_HOW); $(REGISTRY_TIER_HOW); then run make image-test"; \
	fi

## image-push: push $(IMAGE) (after make image) to REGISTRY as
## $(REGISTRY)/wasmhook/wasmhook:<version>; PUSH_FLAGS for podman push (--cert-dir,
## --authfile, --tls-verify=false for a plain-HTTP registry)
REGISTRY ?=
PUSH_IMAGE ?= $(REGISTRY)/wasmhook/wasmhook:$(VERSION)
PUSH_FLAGS ?=
image-push:
	@if [ -z "$(REGISTRY)" ]; then echo "make image-push: set REGISTRY=host[:port][/path]" >&2; exit 2; fi
	@$(PODMAN) image exists $(IMAGE) || { echo "make image-push: no image $(IMAGE): run make image first" >&2; exit 2; }
	$(PODMAN) push $(PUSH_FLAGS) $(IMAGE) docker://$(PUSH_IMAGE)
	@echo "pushed $(PUSH_IMAGE) (deploy/README.md, 'The image': set it in deploy/base/kustomization.yaml's images: entry)"

## soak: sustained mixed load with faults against a release build
## (SOAK_DURATION=10m by default; report in target/soak/)
SOAK_DURATION ?= 10m
soak: setup
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release --quiet -p wasmhook-tests --bin wasmhook-soak -- --duration $(SOAK_DURATION)

## fuzz: each cargo-fuzz target for FUZZ_SECONDS (default 300); a crash is kept
## in tests/fuzz/regressions/ and replayed by `make test` from then on (needs a
## nightly toolchain; installs cargo-fuzz into target/tools/; report in target/fuzz/)
FUZZ_SECONDS ?= 300
fuzz: setup
	python3 tests/fuzz/run.py --seconds $(FUZZ_SECONDS)

## bench: the in-process benchmarks (criterion), then the end-to-end load
## benchmark on a release build (installs wrk if missing; report in target/bench/)
bench: setup examples
	$(CARGO) bench --workspace --bench hot_path
	python3 tests/bench/load.py

## bench-audit: `wasmhook audit` over 11,000 objects in a real kube-apiserver (target/bench/audit.md)
BENCH_AUDIT_ARGS ?=
bench-audit: setup
	@if [ -z "$(KUBE_APISERVER)" ] || [ -z "$(ETCD)" ]; then echo "make bench-audit: $(KUBE_TIER_HOW)" >&2; exit 2; fi
	$(CARGO) build --release --bin wasmhook
	KUBE_APISERVER=$(KUBE_APISERVER) ETCD=$(ETCD) $(CARGO) run --release --quiet -p wasmhook-tests \
		--bin wasmhook-bench-audit -- $(BENCH_AUDIT_ARGS)

## run: serve the built-in policies on https://127.0.0.1:8443 with a development CA
run: setup
	$(CARGO) run --bin wasmhook -- serve

## lint: formatting, clippy and docs, as CI checks them
lint: setup fmt clippy doc

fmt:
	$(CARGO) fmt --all --check

# --all-targets skips the targets with `test = false` (the kube, registry and image tiers): name them.
clippy: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p wasmhook-tests --test kube --test registry --test image -- -D warnings

doc: setup
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --workspace --no-deps

clean:
	$(CARGO) clean
