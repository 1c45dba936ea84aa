# flocker build, test and demo entry points. `make help` lists them.
# Every target that needs the host prepared runs scripts/setup-host.sh first
# (packages, zfs-fuse, tracefs, bpffs); it is quick when nothing is missing.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
# bpf2go compiles with this exact clang so committed objects are reproducible.
CLANG ?= clang-14
CLANG_VERSION := 14.0.6
STRIP ?= llvm-strip-14
BIN := bin/flocker
# VM tier images (kernel, initramfs with OpenZFS) are cached here.
VM_DIR ?= /var/tmp/flocker-vm
export FLOCKER_VM_DIR := $(VM_DIR)
TEST_TIMEOUT ?= 45m
# Time per fuzz target: make fuzz uses FUZZTIME, make test the short CI bound.
FUZZTIME ?= 20s
CI_FUZZTIME ?= 5s

# make install: PREFIX and DESTDIR as usual (DESTDIR stages a package root).
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/flocker
SYSCONFDIR ?= /etc

.PHONY: help setup build test test-unit test-go fuzz test-fuzz generate generate-check lint demo bench soak vm-images clean install

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## prepare this host (root): Debian packages, zfs-fuse, tracefs, bpffs
	scripts/setup-host.sh

build: ## build bin/flocker (static, no cgo, no clang needed)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/flocker

test: setup generate-check lint build vm-images test-go test-fuzz ## everything CI runs (root; CI=true turns skips into failures)

test-go: ## every Go test; tests that failed around a zfs-fuse restart run once more (scripts/go-test.sh)
	GO=$(GO) TEST_TIMEOUT=$(TEST_TIMEOUT) scripts/go-test.sh

fuzz: ## run every go test -fuzz target for FUZZTIME each (default 20s)
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

test-fuzz:
	GO=$(GO) FUZZTIME=$(CI_FUZZTIME) scripts/fuzz.sh

test-unit: ## tests that need no root, no ZFS and no kernel features (go test -short)
	$(GO) test -short -count=1 ./...

check-clang:
	@v=$$($(CLANG) --version 2>/dev/null | head -1); case "$$v" in *" $(CLANG_VERSION)"*) ;; \
	  *) echo "generate needs $(CLANG) $(CLANG_VERSION), found: $${v:-none} (run make setup)"; exit 1;; esac

generate: check-clang ## rebuild the committed BPF objects and Go bindings with bpf2go
	BPF_CLANG=$(CLANG) BPF_STRIP=$(STRIP) $(GO) generate ./bpf/...

generate-check: generate ## fail when committed generated files differ from a fresh generate
	@if ! git diff --quiet -- bpf/ || [ -n "$$(git ls-files --others --exclude-standard -- bpf/)" ]; then \
	  git status --short -- bpf/; echo "generated BPF files are stale: run make generate and commit"; exit 1; fi

lint: ## gofmt, go vet and staticcheck (run through go tool: nothing global)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

vm-images: setup ## build (or reuse) the qemu guest images: Debian 6.1 kernel + OpenZFS 2.3 + flocker
	test/vm/build-images.sh

# make demo VM=1: the same story on two qemu guests with OpenZFS (vm-images).
demo: setup build $(if $(filter 1,$(VM)),vm-images) ## the main job: two flocker hosts on this machine (root); VM=1: on two OpenZFS guests
ifeq ($(VM),1)
	$(GO) run ./test/demo -vm
else
	$(GO) run ./test/demo -flocker $(BIN)
endif

BENCH_ARGS ?=
bench: setup build $(if $(filter 1,$(VM)),vm-images) ## flocker bench on the two-host rig (BENCH_ARGS=--quick), the 10-minute false-failovers run, then the Go benchmarks; VM=1: the VM tier
ifeq ($(VM),1)
	$(BIN) bench --scenario vm $(BENCH_ARGS)
else
	$(BIN) bench $(BENCH_ARGS)
	$(BIN) bench $(BENCH_ARGS) --scenario false-failovers --out bench/results/false-failovers
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
endif

# make soak: SOAK_DURATION of faults (one every SOAK_EVERY); SOAK_SEED=N replays a run's draw (0: a
# new seed, printed). go test runs the same soak for 2 minutes.
SOAK_DURATION ?= 10m
SOAK_EVERY ?= 30s
SOAK_SEED ?= 0
soak: setup ## 10 min of mixed workload, a random fault every 30 s, on the host tier (root); lost writes fail it
	CI=true $(GO) test -count=1 -v -timeout 40m -run '^TestSoak$$' ./test/soak/ \
	  -args -soak.duration=$(SOAK_DURATION) -soak.every=$(SOAK_EVERY) -soak.seed=$(SOAK_SEED)

install: build ## install the binary, the systemd unit and the README (PREFIX, DESTDIR)
	install -D -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/flocker
	install -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/flocker
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/sbin/flocker|$(SBINDIR)/flocker|g' -e 's|/etc/flocker|$(SYSCONFDIR)/flocker|g' \
	  -e 's|/usr/local/share/doc/flocker|$(DOCDIR)|g' contrib/flocker.service > $(DESTDIR)$(UNITDIR)/flocker.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/flocker.service
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md

clean: ## remove build outputs (not the VM image cache)
	rm -rf bin
