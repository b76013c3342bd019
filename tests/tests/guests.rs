//! Real guests, built from Debian packages by `tests/guests/build.sh`, booted on the reference
//! (`qemu-system-i386`, TCG) and on Vessel with the same command line. Both must reach the same
//! markers; both timelines are printed (`cargo test -- --nocapture` shows them).

use std::time::Duration;
use vessel_tests::{compare, guest, reference, run, Emulator, Step, SEABIOS};

const T: Duration = Duration::from_secs(120);
/// Linux boots through ~6.5 G instructions on the interpreter (2-3 minutes); QEMU takes seconds.
const T_LINUX: Duration = Duration::from_secs(420);

fn seabios_args() -> Vec<&'static str> {
    vec!["-bios", SEABIOS, "-nographic", "-nic", "none", "-m", "64", "-boot", "menu=on"]
}
const SEABIOS_SCRIPT: &[Step] = &[Step::Expect("SeaBIOS (version"), Step::Expect("Press ESC for boot menu")];

fn linux_kernel_args() -> Vec<String> {
    vec![
        "-nographic".into(), "-nic".into(), "none".into(), "-m".into(), "128".into(),
        "-kernel".into(), guest("vmlinuz-686"), "-initrd".into(), guest("initrd.cpio.gz"),
        "-append".into(), "console=ttyS0 panic=-1".into(),
    ]
}
fn linux_disk_args() -> Vec<String> {
    vec![
        "-nographic".into(), "-nic".into(), "none".into(), "-m".into(), "128".into(),
        "-drive".into(), format!("file={},format=raw,if=ide,snapshot=on", guest("linux-disk.img")),
    ]
}
/// Boot to the initramfs shell, run a command whose answer the guest must compute, reboot.
const LINUX_SCRIPT: &[Step] = &[
    Step::Expect("Linux version 6.1"),
    Step::Expect("VESSEL-GUEST-READY"),
    Step::Expect("# "),
    Step::Send("echo MARK-$((6*7))-$(cat /proc/cpuinfo | grep -c ^processor)\n"),
    Step::Expect("MARK-42-1"),
];

fn grub_args() -> Vec<String> {
    vec![
        "-nographic".into(), "-nic".into(), "none".into(), "-m".into(), "64".into(),
        "-cdrom".into(), guest("grub-rescue.iso"), "-boot".into(), "d".into(),
    ]
}
const GRUB_SCRIPT: &[Step] = &[Step::Expect("GNU GRUB"), Step::Expect("Vessel GRUB test entry")];

fn memtest_args() -> Vec<String> {
    vec![
        "-nographic".into(), "-nic".into(), "none".into(), "-m".into(), "64".into(),
        "-kernel".into(), guest("memtest86+ia32.bin"), "-append".into(), "console=ttyS0,115200".into(),
    ]
}
const MEMTEST_SCRIPT: &[Step] = &[
    Step::Expect("Memtest86+ v6"),
    Step::Expect("Address test, walking ones"),
    // tests #3-#6 (the pass is under way). memtest86+ redraws the serial screen from a periodic
    // sample, so a short test's name may never be sent: match what #3..#6 have in common.
    Step::Expect("Moving inversions"),
];

/// memtest86+ from a 1.44M floppy: SeaBIOS's INT 13h floppy driver (FDC + ISA DMA) loads the
/// syslinux boot sector, syslinux reads ldlinux.sys and the kernel through INT 13h.
fn floppy_memtest_args() -> Vec<String> {
    vec![
        "-nographic".into(), "-nic".into(), "none".into(), "-m".into(), "64".into(),
        "-fda".into(), guest("floppy-memtest.img"), "-boot".into(), "a".into(),
    ]
}
const FLOPPY_MEMTEST_SCRIPT: &[Step] = &[
    Step::Expect("Booting from Floppy"),
    Step::Expect("SYSLINUX 6"),
    Step::Expect("Memtest86+ v6"),
    Step::Expect("Address test, walking ones"),
    Step::Expect("Moving inversions"),
];

/// Every "Errors:" count memtest86+ printed must be zero.
fn assert_no_memtest_errors(output: &str) {
    let counts: Vec<&str> = output
        .split("Errors:")
        .skip(1)
        .map(|rest| rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
        .collect();
    assert!(!counts.is_empty(), "memtest86+ printed no error count");
    assert!(counts.iter().all(|c| *c == "0"), "memtest86+ reported errors: {counts:?}");
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// --- The reference alone: proves the guests and scripts are right, independent of Vessel. ---

#[test]
fn reference_seabios_banner() {
    reference(&seabios_args(), SEABIOS_SCRIPT, T);
}
#[test]
fn reference_linux_kernel_initrd_shell() {
    reference(&strs(&linux_kernel_args()), LINUX_SCRIPT, T);
}
#[test]
fn reference_linux_from_disk_syslinux_shell() {
    reference(&strs(&linux_disk_args()), LINUX_SCRIPT, T);
}
#[test]
fn reference_grub_rescue_iso_menu() {
    reference(&strs(&grub_args()), GRUB_SCRIPT, T);
}
#[test]
fn reference_memtest86plus_pass_start() {
    let r = reference(&strs(&memtest_args()), MEMTEST_SCRIPT, T);
    assert_no_memtest_errors(&r.output);
}

// --- Vessel against the reference, same command line. ---
// Ignored while `vessel run` cannot boot the guest yet; docs/status/boot.md says how far it gets.

#[test]
fn seabios_banner() {
    compare(&seabios_args(), SEABIOS_SCRIPT, T);
}
#[test]
fn linux_kernel_initrd_shell() {
    compare(&strs(&linux_kernel_args()), LINUX_SCRIPT, T_LINUX);
}
#[test]
fn linux_from_disk_syslinux_shell() {
    compare(&strs(&linux_disk_args()), LINUX_SCRIPT, T_LINUX);
}
#[test]
fn grub_rescue_iso_menu() {
    compare(&strs(&grub_args()), GRUB_SCRIPT, T);
}
#[test]
fn memtest86plus_pass_start() {
    let (q, v) = compare(&strs(&memtest_args()), MEMTEST_SCRIPT, 2 * T);
    assert_no_memtest_errors(&q.output);
    assert_no_memtest_errors(&v.output);
}
#[test]
fn floppy_syslinux_memtest86plus() {
    // one test runs both emulators in turn: QEMU holds a write lock on an -fda image
    let (q, v) = compare(&strs(&floppy_memtest_args()), FLOPPY_MEMTEST_SCRIPT, 2 * T);
    assert_no_memtest_errors(&q.output);
    assert_no_memtest_errors(&v.output);
}

/// md5 of `data` by the host's `md5sum` (coreutils).
fn host_md5(data: &[u8]) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run md5sum");
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Linux's own floppy driver (floppy.ko: FDC probe, CMOS drive types, ISA DMA reads and writes,
/// media autodetection by data rate) on QEMU and on Vessel, each with its own copies of the
/// images. Drive A: a writable 1.44M image of pseudo-random bytes; the guest's md5sum of /dev/fd0
/// must be the host's md5 of the image, and the 1 KiB pattern it writes at sectors 2015-2016
/// (cylinder 55 head 1 sector 18, then cylinder 56) must be in the file after the guest powers
/// off, with every other byte unchanged. Drive B: a read-only 720K image (250 kb/s: the driver
/// first tries 1.44M at 500 kb/s) whose md5sum must match, and which refuses writes (ST3 WP).
#[test]
fn linux_floppy_driver_read_write() {
    let mut x = 0x9E37_79B9u32;
    let image: Vec<u8> = (0..1_474_560)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let image_b: Vec<u8> = image.iter().rev().take(737_280).map(|b| b ^ 0x5A).collect();
    let pattern: Vec<u8> = b"VESSEL-FLOPPY-PATTERN\n".iter().copied().cycle().take(1024).collect();
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let md5_marker = leak(format!("VESSEL-FD0-MD5 {} END", host_md5(&image)));
    let back_marker = leak(format!("VESSEL-FD0-READBACK {} END", host_md5(&pattern)));
    let md5_b_marker = leak(format!("VESSEL-FD1-MD5 {} END", host_md5(&image_b)));
    let script = [
        Step::Expect("VESSEL-FLOPPY-INIT"),
        Step::Expect("Floppy drive(s): fd0 is 1.44M, fd1 is 1.44M"),
        Step::Expect("FDC 0 is a S82078B"),
        Step::Expect(md5_marker),
        Step::Expect("VESSEL-FD0-WRITTEN"),
        Step::Expect(back_marker),
        Step::Expect(md5_b_marker),
        Step::Expect("VESSEL-FD1-WRITE-REFUSED"),
        Step::Expect("reboot: Power down"),
    ];
    for emu in [Emulator::Qemu, Emulator::Vessel] {
        let path = std::env::temp_dir().join(format!("vessel-linux-floppy-{}-{}.img", std::process::id(), emu.name()));
        std::fs::write(&path, &image).unwrap();
        let path_b = path.with_extension("b.img");
        std::fs::write(&path_b, &image_b).unwrap();
        let args: Vec<String> = vec![
            "-nographic".into(), "-nic".into(), "none".into(), "-m".into(), "128".into(),
            "-kernel".into(), guest("vmlinuz-686"), "-initrd".into(), guest("initrd-floppy-ab.cpio.gz"),
            "-append".into(), "console=ttyS0 panic=-1".into(),
            "-drive".into(), format!("file={},if=floppy,format=raw", path.display()),
            "-drive".into(), format!("file={},if=floppy,index=1,format=raw,readonly=on", path_b.display()),
        ];
        // boot plus module loading and I/O: a deadline above T_LINUX (only a slow run uses it)
        let t = run(emu, &strs(&args), &script, 2 * T_LINUX);
        println!("{}", t.report());
        t.assert_ok();
        let after = std::fs::read(&path).unwrap();
        let after_b = std::fs::read(&path_b).unwrap();
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&path_b);
        assert!(after_b == image_b, "{}: read-only drive B changed", emu.name());
        let (a, b) = (2015 * 512, 2017 * 512);
        assert_eq!(after.len(), image.len());
        assert!(after[a..b] == pattern[..], "{}: pattern not in the image", emu.name());
        assert!(after[..a] == image[..a] && after[b..] == image[b..], "{}: other sectors changed", emu.name());
    }
}
// --- Linux's own IDE driver (ata_piix + libata, bus-master DMA) on a qcow2 disk and the CD. ---

fn qemu_tool(tool: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(tool).args(args).output().unwrap_or_else(|e| panic!("{tool}: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// What the guest wrote must be on the image, read back by QEMU's tools, and the image clean.
fn check_scratch(img: &str, iso: &str) {
    let (ok, out) = qemu_tool("qemu-img", &["check", "-f", "qcow2", img]);
    assert!(ok && out.contains("No errors were found"), "qemu-img check {img}:\n{out}");
    let (ok, out) = qemu_tool("qemu-io", &["-r", "-f", "qcow2", "-c", "read -P 0x5a 1M 1M", "-c", "read -P 0 0 1M", img]);
    assert!(ok && !out.contains("failed") && out.matches("read 1048576/1048576 bytes").count() == 2, "qemu-io {img}:\n{out}");
    // the CD sectors the guest copied to the disk at 4 MiB
    let raw = format!("{img}.raw");
    let (ok, out) = qemu_tool("qemu-img", &["convert", "-f", "qcow2", "-O", "raw", img, &raw]);
    assert!(ok, "qemu-img convert: {out}");
    let disk = std::fs::read(&raw).unwrap();
    let _ = std::fs::remove_file(&raw);
    let cd = std::fs::read(iso).unwrap();
    assert!(disk[(4 << 20)..(4 << 20) + 64 * 2048] == cd[16 * 2048..80 * 2048], "CD data copied to the disk differs");
}

fn linux_ata_args(scratch: &str) -> Vec<String> {
    vec![
        "-nographic".into(), "-nic".into(), "none".into(), "-m".into(), "128".into(),
        "-kernel".into(), guest("vmlinuz-686"), "-initrd".into(), guest("initrd-ata.cpio.gz"),
        "-append".into(), "console=ttyS0 panic=-1".into(),
        "-drive".into(), format!("file={scratch},format=qcow2,if=ide,index=0"),
        "-cdrom".into(), guest("grub-rescue.iso"),
    ]
}

/// Boots Linux with ata_piix as a module, on QEMU and on Vessel with the same command line:
/// libata must pick multiword DMA for both drives (so reads and writes go through the bus
/// master), read the CD (md5 against the host's), write a pattern and CD data to the qcow2
/// disk and power off; the image is then checked with qemu-img / qemu-io.
#[test]
fn linux_ata_piix_disk_and_cdrom() {
    let iso = guest("grub-rescue.iso");
    let cd = std::fs::read(&iso).expect("read the ISO");
    let md5: &'static str = Box::leak(host_md5(&cd[16 * 2048..80 * 2048]).into_boxed_str());
    let script = [
        Step::Expect("Linux version 6.1"),
        Step::Expect("VESSEL-GUEST-READY"),
        Step::Expect("# "),
        Step::Send("while [ ! -b /dev/sr0 ] || [ ! -b /dev/sda ]; do sleep 1; done; echo DEVS-$((40+2))\n"),
        Step::Expect("DEVS-42"),
        Step::Send("echo MODES-$(cat /sys/class/ata_device/dev1.0/xfer_mode)-$(cat /sys/class/ata_device/dev2.0/xfer_mode)\n"),
        Step::Expect("MODES-XFER_MW_DMA_2-XFER_MW_DMA_2"),
        Step::Send("dd if=/dev/sr0 bs=2048 skip=16 count=64 2>/dev/null | md5sum\n"),
        Step::Expect(md5),
        Step::Send("tr '\\000' '\\132' < /dev/zero | head -c 1048576 > /tmp/z; dd if=/tmp/z of=/dev/sda bs=4096 seek=256 2>/dev/null; dd if=/dev/sr0 of=/dev/sda bs=2048 skip=16 count=64 seek=2048 2>/dev/null; sync; echo WROTE-$((1+1))\n"),
        Step::Expect("WROTE-2"),
        Step::Send("poweroff -f\n"),
        Step::ExpectExit,
    ];
    let dir = std::env::temp_dir().join(format!("vessel-ata-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for emu in [Emulator::Qemu, Emulator::Vessel] {
        let img = dir.join(format!("scratch-{}.qcow2", emu.name())).to_string_lossy().into_owned();
        let (ok, out) = qemu_tool("qemu-img", &["create", "-q", "-f", "qcow2", &img, "16M"]);
        assert!(ok, "qemu-img create: {out}");
        let args = linux_ata_args(&img);
        // boot plus module loading and I/O: a deadline above T_LINUX (only a slow run uses it)
        let t = run(emu, &strs(&args), &script, 2 * T_LINUX);
        println!("{}", t.report());
        t.assert_ok();
        check_scratch(&img, &iso);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lines of the fdctest transcript (1 = "FDCTEST BEGIN") where QEMU and Vessel differ on
/// purpose: `(line, QEMU, Vessel, why)`. Every other line must be identical.
const FDCTEST_DIFFERENCES: &[(usize, &str, &str, &str)] = &[
    (13, "C00 00 00 00 0A 03 12 00 57 00", "C00 00 00 00 AF 02 03 00 57 00",
     "DUMPREG: QEMU dumps its decoded SPECIFY timers (0A 03) and the medium's sectors per track; \
      the 82078 returns the SPECIFY bytes (AF 02) and the EOT register (SeaBIOS's last read: 3)"),
    (16, "C00 00 00 00 0A 03 12 80 57 00", "C00 00 00 00 AF 02 03 80 57 00", "DUMPREG, as line 13"),
    (20, "C79", "C41", "SENSE DRIVE STATUS of drive B: QEMU always has a second drive; here none is installed"),
    (22, "S80 80 1C 00 FFFF", "S81 80 1C 00 FFFF", "MSR drive 0 busy after RECALIBRATE until SENSE INTERRUPT (82078); QEMU never sets it"),
    (25, "C21 00", "C71 00", "RECALIBRATE of the missing drive B: no track 0 signal, equipment check"),
    (27, "S80 00 1C 00 FFFF", "S81 00 1C 00 FFFF", "MSR busy bit after SEEK, as line 22"),
    (28, "C20 05", "C24 05", "ST0 after SEEK with head 1: the 82078 reports the head; QEMU clears it"),
    (38, "C20 00 00 06 00 01 02", "C04 00 00 06 00 01 02",
     "TC exactly at EOT of head 1 (MT): QEMU adds SE and head 0 for the move to the next cylinder"),
    (39, "C20 00 00 06 00 01 02", "C00 00 00 06 00 01 02", "TC exactly at EOT: as line 38"),
    (40, "C20 00 00 06 00 01 02", "C40 80 00 05 00 12 02",
     "EOT before terminal count: the 82078 ends with AT + EN and the last sector; QEMU ends normally"),
    (43, "C40 80 00 05 00 13 02", "C40 04 00 05 00 13 02", "sector 19 is not on the track: ND (82078); QEMU says EN"),
    (46, "C07 00 00 00 0A 03 12 00 57 00", "C07 00 00 00 AF 02 12 00 57 00", "DUMPREG timers, as line 13"),
    (48, "C40 01 00 07 00 02 02", "C40 01 00 07 00 01 02", "READ ID's R (the sector under the head) is not defined"),
    (49, "C00 00 00 07 00 03 02", "C00 00 00 07 00 02 02", "READ ID's R, as line 48"),
    (52, "C00 00 00 07 00 12 02 d0400 BFD5", "C40 80 00 07 00 12 02 d0400 BFD5",
     "non-DMA read to EOT (no TC): AT + EN as line 40"),
    (55, "C07 00 00 00 0A 03 12 0C 57 00", "C07 00 00 00 AF 02 12 03 57 00",
     "DUMPREG after PERPENDICULAR 0x83: GAP/WGATE in bits 0-1 (82078); QEMU shifts them to bits 2-3"),
];

fn fdctest_lines(output: &str) -> Vec<String> {
    let start = output.find("FDCTEST BEGIN").expect("FDCTEST BEGIN");
    let end = output[start..].find("FDCTEST END").expect("FDCTEST END") + start;
    output[start..end].lines().map(|l| l.trim_end().to_string()).collect()
}

/// The floppy controller's registers and commands driven directly by a boot sector
/// (tests/guests/fdctest.S: reset polling, VERSION/PART ID, SPECIFY/CONFIGURE/LOCK/DUMPREG,
/// RECALIBRATE/SEEK/relative SEEK, DMA reads with TC, multi-track, EOT, implied seek, data rate
/// and FM errors, READ ID, non-DMA reads, PERPENDICULAR; data sums and the i8237's count and TC
/// status), compared line by line between QEMU and Vessel. The lines where the two differ on
/// purpose are listed in `FDCTEST_DIFFERENCES` with both values and the reason.
#[test]
fn floppy_controller_registers_vs_qemu() {
    let args: Vec<String> = vec![
        "-nographic".into(), "-nic".into(), "none".into(), "-m".into(), "64".into(),
        "-fda".into(), guest("floppy-fdctest.img"), "-boot".into(), "a".into(),
    ];
    let script = [Step::Expect("FDCTEST BEGIN"), Step::Expect("FDCTEST END")];
    let (q, v) = compare(&strs(&args), &script, T);
    let (ql, vl) = (fdctest_lines(&q.output), fdctest_lines(&v.output));
    assert_eq!(ql.len(), vl.len(), "QEMU:\n{}\nVessel:\n{}", ql.join("\n"), vl.join("\n"));
    for (i, (a, b)) in ql.iter().zip(&vl).enumerate() {
        let line = i + 1;
        match FDCTEST_DIFFERENCES.iter().find(|d| d.0 == line) {
            Some(&(_, qemu, vessel, why)) => {
                assert_eq!(a, qemu, "line {line}: QEMU's known value ({why})");
                assert_eq!(b, vessel, "line {line}: Vessel's value ({why})");
            }
            None => assert_eq!(b, a, "line {line} differs from QEMU"),
        }
    }
}
