# The two commands of the README:
#   make run   builds everything and starts the appliance on http://127.0.0.1:8000
#   make test  runs the whole test suite (against a real TigerBeetle replica)
# Both install what they need first (scripts/bootstrap.sh skips what is already there).

CARGO ?= cargo

.PHONY: run test bootstrap build clean-data

bootstrap:
	./scripts/bootstrap.sh

build: bootstrap
	$(CARGO) build --release --locked

run: build
	./target/release/tigerfans serve --tigerbeetle-bin tools/bin/tigerbeetle

test: bootstrap
	$(CARGO) test --locked --all-targets

clean-data:
	rm -rf data
