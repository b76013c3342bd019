# The two entry points of the README. Everything else is cargo.
.PHONY: setup guests build run test install

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

# Install the binary, desktop file, AppStream metainfo, icons and translations under
# $(DESTDIR)$(PREFIX) (the manager finds its catalogues in <prefix>/share/locale).
PREFIX ?= /usr/local
install:
	cargo build --release -p vessel
	install -Dm755 $${CARGO_TARGET_DIR:-target}/release/vessel $(DESTDIR)$(PREFIX)/bin/vessel
	install -Dm644 resources/org.vessel.Vessel.desktop $(DESTDIR)$(PREFIX)/share/applications/org.vessel.Vessel.desktop
	install -Dm644 resources/org.vessel.Vessel.metainfo.xml $(DESTDIR)$(PREFIX)/share/metainfo/org.vessel.Vessel.metainfo.xml
	install -Dm644 resources/icons/hicolor/scalable/apps/org.vessel.Vessel.svg $(DESTDIR)$(PREFIX)/share/icons/hicolor/scalable/apps/org.vessel.Vessel.svg
	install -Dm644 resources/icons/hicolor/symbolic/apps/org.vessel.Vessel-symbolic.svg $(DESTDIR)$(PREFIX)/share/icons/hicolor/symbolic/apps/org.vessel.Vessel-symbolic.svg
	for l in $$(cat po/LINGUAS); do \
	  install -d $(DESTDIR)$(PREFIX)/share/locale/$$l/LC_MESSAGES && \
	  msgfmt -o $(DESTDIR)$(PREFIX)/share/locale/$$l/LC_MESSAGES/vessel.mo po/$$l.po || exit 1; \
	done
