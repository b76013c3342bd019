#!/usr/bin/env bash
# Builds Vessel's real test guests from Debian packages into tests/guests/out/ (git-ignored).
# Idempotent: each artefact is rebuilt only when missing. Uses apt-get download (i386 packages are
# extracted, never installed) and host tools installed by scripts/setup-debian.
#
# Produces:
#   vmlinuz-686          Debian 12 i386 kernel (linux-image-*-686)
#   initrd.cpio.gz       busybox (static, i386) initramfs: prints VESSEL-GUEST-READY on the console,
#                        then runs a shell on it
#   initrd-ata.cpio.gz   the same plus the kernel's IDE/ATA modules (ata_piix, libata, sd_mod, sr_mod,
#                        cdrom, scsi_mod and their dependencies), loaded with insmod in /init
#   linux-disk.img       raw disk: syslinux MBR -> FAT16 partition -> syslinux -> same kernel/initrd
#   grub-rescue.iso      grub-mkrescue ISO (El Torito) with a menu, on VGA and serial
#   memtest86+ia32.bin   memtest86+ (Linux boot protocol image, loadable with -kernel)
#   initrd-floppy-ab.cpio.gz  busybox initramfs for vmlinuz-686 that loads floppy.ko (from the
#                        same kernel package), prints the md5sum of /dev/fd0, writes a pattern to
#                        sectors 2015-2016 (a cylinder boundary) and reads it back; then, if there
#                        is a drive B, prints the md5sum of /dev/fd1 and tries to write to it;
#                        powers off
#   floppy-fdctest.img   1.44M floppy: boot sector + table from fdctest.S (drives the FDC's
#                        registers directly, prints results on COM1); sector n holds n in decimal
#   floppy-memtest.img   1.44M FAT12 floppy: syslinux boot sector -> syslinux (serial console)
#                        -> memtest86+ (KERNEL) with console=ttyS0,115200
#   initrd-fb.cpio.gz    busybox initramfs with Linux's Cirrus drivers (DRM `cirrus` or fbdev
#                        `cirrusfb`, chosen by `vessel.fb=drm|fbdev` on the kernel command line):
#                        draws a test screen on the framebuffer console, prints VESSEL-FB-DONE,
#                        then exits through isa-debug-exit (port 0x501)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/out"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log() { echo "guests: $*" >&2; }

# apt-get download of a foreign-architecture package needs that architecture's package lists.
ensure_i386_lists() {
  if ! dpkg --print-foreign-architectures | grep -qx i386; then
    dpkg --add-architecture i386
  fi
  if ! apt-cache show busybox-static:i386 >/dev/null 2>&1; then
    # A mirror mid-sync can fail one index; the others still update, so don't abort here.
    apt-get update -q || true
  fi
}

download() { # download PKG into $work/debs and extract it into $work/root
  mkdir -p "$work/debs" "$work/root"
  (cd "$work/debs" && apt-get download "$1" >/dev/null 2>&1) || { log "apt-get download $1 failed"; exit 1; }
  local deb
  deb=$(ls -t "$work/debs"/*.deb | head -n 1)
  dpkg-deb -x "$deb" "$work/root"
}

if [ ! -s "$out/vmlinuz-686" ] || [ ! -s "$out/initrd.cpio.gz" ]; then
  ensure_i386_lists
  kpkg=$(apt-cache depends linux-image-686:i386 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$kpkg" ] || { log "cannot resolve linux-image-686:i386"; exit 1; }
  log "kernel package $kpkg"
  download "$kpkg"
  cp "$(ls "$work"/root/boot/vmlinuz-* | head -n 1)" "$out/vmlinuz-686"
  download busybox-static:i386
  ir="$work/initramfs"
  mkdir -p "$ir"/{bin,dev,proc,sys,tmp}
  cp "$work/root/bin/busybox" "$ir/bin/busybox"
  cat > "$ir/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "VESSEL-GUEST-READY kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo)"
# A shell on the console; a test types commands and ends with `reboot -f` or `poweroff -f`.
exec setsid cttyhack sh
INIT
  chmod +x "$ir/init"
  (cd "$ir" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd.cpio.gz"
fi

# The kernel package's modules (same kernel as vmlinuz-686), extracted once per run into $work/kernel.
kernel_modules() {
  if [ ! -d "$work/kernel/lib/modules" ]; then
    ensure_i386_lists
    local kpkg
    kpkg=$(apt-cache depends linux-image-686:i386 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    [ -n "$kpkg" ] || { log "cannot resolve linux-image-686:i386"; exit 1; }
    mkdir -p "$work/kdeb" "$work/kernel"
    (cd "$work/kdeb" && apt-get download "$kpkg" >/dev/null 2>&1) || { log "apt-get download $kpkg failed"; exit 1; }
    dpkg-deb -x "$work"/kdeb/*.deb "$work/kernel"
  fi
  # the modules must come from the kernel the tests boot
  cmp -s "$out/vmlinuz-686" "$(ls "$work"/kernel/boot/vmlinuz-* | head -n 1)" ||
    { log "the kernel package changed since vmlinuz-686 was built: remove out/vmlinuz-686 out/initrd*.cpio.gz and rerun"; exit 1; }
  echo "$work"/kernel/lib/modules/*/kernel
}

# The kernel package's modules named by $@ and everything they depend on, dependencies first
# (from the `depends=` field of each module's .modinfo; the package carries no modules.dep).
module_closure() {
  local mods="$1" name f dep
  shift
  for name in "$@"; do
    case " $seen_mods " in *" $name "*) continue ;; esac
    seen_mods="$seen_mods $name"
    f=$(find "$mods" -name "$name.ko" -o -name "$(echo "$name" | tr _ -).ko" -o -name "$(echo "$name" | tr - _).ko" | head -n 1)
    [ -n "$f" ] || { log "module $name not in the kernel package"; exit 1; }
    for dep in $(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | tr , ' '); do
      module_closure "$mods" "$dep"
    done
    echo "$f"
  done
}

# Copy the closure of modules $2... into initramfs $1/lib/modules and list their load order in
# $1/lib/modules/order-$ORDER (default: order).
add_modules() {
  local ir="$1" mods f
  shift
  mods=$(kernel_modules)
  mkdir -p "$ir/lib/modules"
  seen_mods=""
  for f in $(module_closure "$mods" "$@"); do
    cp "$f" "$ir/lib/modules/"
    basename "$f" >> "$ir/lib/modules/order${ORDER:+-$ORDER}"
  done
}

if [ ! -s "$out/initrd-ata.cpio.gz" ]; then
  log "initrd-ata.cpio.gz (ata_piix, sd_mod, sr_mod)"
  ir="$work/initramfs-ata"
  mkdir -p "$ir"/{bin,dev,proc,sys,tmp}
  # crypto back ends the CRC helpers ask for by alias (soft dependencies) come first
  add_modules "$ir" crct10dif_generic crc64_rocksoft_generic ata_piix sd_mod sr_mod
  gunzip -c "$out/initrd.cpio.gz" | (cd "$ir" && cpio -id --quiet bin/busybox)
  cat > "$ir/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /lib/modules/order); do
  insmod /lib/modules/$m || echo "VESSEL-INSMOD-FAILED $m"
done
# (libata probes asynchronously: a test waits for the block devices it needs)
echo "VESSEL-GUEST-READY kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) modules=$(wc -l < /proc/modules)"
# A shell on the console; a test types commands and ends with `reboot -f` or `poweroff -f`.
exec setsid cttyhack sh
INIT
  chmod +x "$ir/init"
  (cd "$ir" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd-ata.cpio.gz.tmp"
  mv "$out/initrd-ata.cpio.gz.tmp" "$out/initrd-ata.cpio.gz"
fi

if [ ! -s "$out/initrd-fb.cpio.gz" ]; then
  log "initrd-fb.cpio.gz (Cirrus framebuffer drivers)"
  ir="$work/initramfs-fb"
  mkdir -p "$ir"/{bin,dev,proc,sys,tmp}
  ORDER=drm add_modules "$ir" cirrus
  ORDER=fbdev add_modules "$ir" cirrusfb
  gunzip -c "$out/initrd.cpio.gz" | (cd "$ir" && cpio -id --quiet bin/busybox)
  cat > "$ir/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "VESSEL-GUEST-READY kernel=$(uname -r)"
case "$(cat /proc/cmdline)" in
  *vessel.fb=drm*) order=/lib/modules/order-drm ;;
  *vessel.fb=fbdev*) order=/lib/modules/order-fbdev ;;
  *) order=/dev/null ;;
esac
for m in $(cat $order); do insmod /lib/modules/$m || echo "VESSEL-INSMOD-FAILED $m"; done
i=0
while [ ! -e /sys/class/graphics/fb0/name ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
g=/sys/class/graphics/fb0
if [ ! -e $g/name ]; then
  # say why, for whoever reads the test's output
  echo "VESSEL-FB-MISSING"; dmesg | tail -n 25; cat /proc/iomem
  for d in /sys/bus/pci/devices/*; do echo "PCI $d $(cat $d/vendor):$(cat $d/device)"; done
fi
echo "VESSEL-FB name=$(cat $g/name) size=$(cat $g/virtual_size) bpp=$(cat $g/bits_per_pixel) mode=$(head -n 1 $g/modes)"
echo 0 > /sys/class/graphics/fbcon/cursor_blink 2>/dev/null
# 60 coloured lines scroll a console of fewer rows; then a reverse-video line; cursor hidden.
{
  printf '\033[2J\033[H\033[?25l'
  for i in $(seq 1 60); do
    printf '\033[%d;3%dm line %02d: The quick brown fox jumps over the lazy dog 0123456789 \033[0m\n' $((i % 2)) $((i % 8)) $i
  done
  printf '\033[7m VESSEL FRAMEBUFFER TEST \033[0m'
} > /dev/tty1
sleep 2
echo "VESSEL-FB-DONE"
sleep 3
# isa-debug-exit: the run ends here (Vessel writes its screenshot; the test dumped QEMU's already)
printf '\001' | dd of=/dev/port bs=1 seek=1281 count=1 2>/dev/null
exec setsid cttyhack sh
INIT
  chmod +x "$ir/init"
  (cd "$ir" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd-fb.cpio.gz"
fi

if [ ! -s "$out/linux-disk.img" ]; then
  log "linux-disk.img (syslinux)"
  img="$work/disk.img"
  truncate -s 64M "$img"
  echo 'start=2048, type=6, bootable' | sfdisk -q "$img"
  part="$work/part.img"
  truncate -s $(( (64 * 1024 * 1024) - 2048 * 512 )) "$part"
  mkfs.fat -F 16 -n VESSEL "$part" >/dev/null
  cat > "$work/syslinux.cfg" <<'CFG'
SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 1
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=tty0 console=ttyS0,115200 panic=-1
CFG
  mcopy -i "$part" "$out/vmlinuz-686" ::vmlinuz
  mcopy -i "$part" "$out/initrd.cpio.gz" ::initrd.gz
  mcopy -i "$part" "$work/syslinux.cfg" ::syslinux.cfg
  syslinux --install "$part"
  dd if="$part" of="$img" bs=512 seek=2048 conv=notrunc status=none
  dd if=/usr/lib/syslinux/mbr/mbr.bin of="$img" bs=440 count=1 conv=notrunc status=none
  mv "$img" "$out/linux-disk.img"
fi

if [ ! -s "$out/grub-rescue.iso" ]; then
  log "grub-rescue.iso"
  iso="$work/iso"
  mkdir -p "$iso/boot/grub"
  cat > "$iso/boot/grub/grub.cfg" <<'CFG'
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=30
menuentry "Vessel GRUB test entry" {
  echo "VESSEL-GRUB-ENTRY"
}
menuentry "Halt" {
  halt
}
CFG
  grub-mkrescue -o "$out/grub-rescue.iso" "$iso" >/dev/null 2>&1
fi

if [ ! -s "$out/memtest86+ia32.bin" ]; then
  log "memtest86+"
  download memtest86+
  cp "$work/root/boot/memtest86+ia32.bin" "$out/memtest86+ia32.bin"
fi

if [ ! -s "$out/floppy-memtest.img" ]; then
  log "floppy-memtest.img (1.44M, syslinux + memtest86+)"
  fimg="$work/floppy.img"
  mkfs.fat -C -n VESSELFD "$fimg" 1440 >/dev/null
  cat > "$work/floppy-syslinux.cfg" <<'CFG'
SERIAL 0 115200
DEFAULT memtest
PROMPT 0
TIMEOUT 1
LABEL memtest
  KERNEL memtest
  APPEND console=ttyS0,115200
CFG
  mcopy -i "$fimg" "$out/memtest86+ia32.bin" ::memtest
  mcopy -i "$fimg" "$work/floppy-syslinux.cfg" ::syslinux.cfg
  syslinux --install "$fimg"
  mv "$fimg" "$out/floppy-memtest.img"
fi

if [ ! -s "$out/initrd-floppy-ab.cpio.gz" ]; then
  log "initrd-floppy-ab.cpio.gz (busybox + floppy.ko)"
  mods=$(kernel_modules)
  fir="$work/initramfs-floppy"
  mkdir -p "$fir"/{bin,dev,lib,proc,sys,tmp}
  cp "$(find "$mods" -name floppy.ko | head -n 1)" "$fir/lib/floppy.ko"
  download busybox-static:i386
  cp "$work/root/bin/busybox" "$fir/bin/busybox"
  cat > "$fir/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "VESSEL-FLOPPY-INIT kernel=$(uname -r)"
insmod /lib/floppy.ko || echo "VESSEL-FLOPPY-INSMOD-FAILED"
i=0
while [ ! -b /dev/fd0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
sum=$(md5sum < /dev/fd0)
echo "VESSEL-FD0-MD5 ${sum%% *} END"
yes VESSEL-FLOPPY-PATTERN | head -c 1024 > /tmp/pattern
if dd if=/tmp/pattern of=/dev/fd0 bs=512 seek=2015 conv=notrunc,fsync 2>/dev/null; then
  echo "VESSEL-FD0-WRITTEN"
else
  echo "VESSEL-FD0-WRITE-FAILED"
fi
echo 3 > /proc/sys/vm/drop_caches
back=$(dd if=/dev/fd0 bs=512 skip=2015 count=2 2>/dev/null | md5sum)
echo "VESSEL-FD0-READBACK ${back%% *} END"
if [ -b /dev/fd1 ]; then
  sum=$(md5sum < /dev/fd1)
  echo "VESSEL-FD1-MD5 ${sum%% *} END"
  if dd if=/tmp/pattern of=/dev/fd1 bs=512 seek=10 conv=notrunc,fsync 2>/dev/null; then
    echo "VESSEL-FD1-WRITE-ALLOWED"
  else
    echo "VESSEL-FD1-WRITE-REFUSED"
  fi
fi
poweroff -f
INIT
  chmod +x "$fir/init"
  (cd "$fir" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd-floppy-ab.cpio.gz"
fi

if [ ! -s "$out/floppy-fdctest.img" ]; then
  log "floppy-fdctest.img (fdctest.S)"
  gcc -c -o "$work/fdctest.o" "$here/fdctest.S"
  ld -Ttext=0x7c00 --oformat binary -o "$work/fdctest.bin" "$work/fdctest.o"
  [ "$(stat -c %s "$work/fdctest.bin")" = 1536 ] || { log "fdctest.bin is not 3 sectors"; exit 1; }
  seq -f '%0511g' 0 2879 > "$work/fdctest.img"
  dd if="$work/fdctest.bin" of="$work/fdctest.img" conv=notrunc status=none
  mv "$work/fdctest.img" "$out/floppy-fdctest.img"
fi

ls -la "$out" >&2
