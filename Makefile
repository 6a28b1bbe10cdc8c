# The two commands of the README:
#   make run   builds everything and starts the appliance on http://127.0.0.1:8000
#   make test  runs the whole test suite: the layering check, cargo tests against a real
#              TigerBeetle replica (and a three-replica cluster), the disk-trouble script and
#              short fuzz runs, then the Raspberry Pi bundles (cross-built, checked under qemu
#              and run natively) and the systemd units and install.sh, a tiny benchmark run, and
#              the Pi bundle installed by its install.sh and run under systemd on an emulated
#              Debian 12 arm64 machine (qemu-system-aarch64, image cached in target/vm/)
# Both install what they need first (scripts/bootstrap.sh skips what is already there).

CARGO ?= cargo

.PHONY: run test test-layers test-cargo test-faults test-dist test-bench test-vm dist bootstrap build bench clean-data

bootstrap:
	./scripts/bootstrap.sh

build: bootstrap
	$(CARGO) build --release --locked

run: build
	./target/release/tigerfans serve --tigerbeetle-bin tools/bin/tigerbeetle --accounting-endpoints

test: test-layers test-cargo test-faults test-dist test-bench test-vm

# No import cycle between modules, no source file over 600 lines, no function over 70 lines
# (TigerStyle); `python3 scripts/check-layers.py --graph` prints who imports whom.
test-layers:
	python3 scripts/check-layers.py --self-test
	python3 scripts/check-layers.py

test-cargo: bootstrap
	./scripts/test-deps.sh
	$(CARGO) test --locked --all-targets

# Faults a cargo test cannot arrange (a disk filling up or turning read-only needs root), and a
# short run of every fuzz target (longer runs: fuzz/README.md).
test-faults: test-cargo
	./scripts/disk-trouble.sh target/debug/tigerfans
	./scripts/fuzz.sh 20

# dist/tigerfans-VERSION-{aarch64,x86_64}-linux.tar.gz
dist: bootstrap
	./cross/build.sh

test-dist: dist build
	./cross/test-bundle.sh
	TIGERFANS_BIN=target/release/tigerfans ./cross/test-packaging.sh

# The benchmark scripts end to end, tiny (its figures mean nothing at this size; it must run).
test-bench: build
	./scripts/bench.sh 1 2000
	KNEE_DURATION_S=2 KNEE_RATES="1000 2000" KNEE_OUT=target/knee-test KNEE_SVG=target/knee-test/knee.svg \
		./scripts/knee.sh sweep checkout

# The aarch64 bundle on an emulated Debian 12 arm64 machine (TCG), installed by its install.sh:
# both units, a purchase, restarts, kill -9 of the replica, a short bench, the audit; on Debian's
# 4 KiB-page kernel with 4 GiB (install.sh picks the medium profile), then on its 16 KiB-page one
# (a Raspberry Pi 5's default) with 2 GiB, a 2 GB board (the small profile). Needs root
# (sudo otherwise); builds and caches the VM image in target/vm/ the first time (docs/testing.md).
test-vm: dist
	./cross/vm-test.sh
	VM_KERNEL=16k VM_MEM_MIB=2048 ./cross/vm-test.sh

# Against a running server: make bench BASE=http://127.0.0.1:8000
BASE ?= http://127.0.0.1:8000
bench: build
	./target/release/tigerfans bench --base $(BASE) --phase all --total 100000 --concurrency 256 --json bench-results.json

clean-data:
	rm -rf data
