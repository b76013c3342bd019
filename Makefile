# The two entry points of the README. Everything else is cargo.
.PHONY: setup guests build run test

setup:
	./scripts/setup-debian

# Real test guests from Debian packages (kernel, busybox initramfs, syslinux disk, GRUB ISO, memtest86+).
guests: setup
	./tests/guests/build.sh

build: setup
	cargo build --release --workspace

# Boot Debian's SeaBIOS and the Debian i386 test kernel headless, console on stdout.
run: build guests
	./target/release/vessel run -nographic -m 128 -kernel tests/guests/out/vmlinuz-686 \
	    -initrd tests/guests/out/initrd.cpio.gz -append "console=ttyS0"

# The whole test suite: unit, differential (KVM, host x87, qemu-img, qemu-system-i386) and
# whole-system guest tests.
test: build guests
	cargo test --release --workspace
