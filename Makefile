# The two entry points of the README. Everything else is cargo.
.PHONY: setup run test build

setup:
	./scripts/setup-debian

build: setup
	cargo build --release --workspace

# Boot Debian's SeaBIOS headless with the serial console on stdout.
run: build
	./target/release/vessel --help

# The whole test suite: unit, differential (KVM, qemu-img, qemu-system-i386) and integration tests.
test: setup
	cargo test --release --workspace
