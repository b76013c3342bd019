//! The real GTK manager, in-process, on a private Xvfb display: the test presses the same buttons
//! a user would (`emit_clicked`, setting entries, spin buttons and drop-downs through their
//! widgets, answering the delete dialog with `response`), then checks what landed on disk with
//! the store and `qemu-img`, and what a VM does through its control socket.
//!
//! Set `VESSEL_SCREENSHOT_DIR` to write the screenshots for docs/screenshots/.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use relm4::gtk::prelude::*;
use relm4::prelude::*;
use relm4::{adw, gtk};
use vessel_core::profile::{self, DiskFormat, OsType, Profile, Store, Vga};

use super::library::{Init, Library, Row};
use super::vmproc::VmState;
use super::wizard::WizardWidgets;

struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    /// Xvfb on the first free display number from :90.
    fn start() -> Xvfb {
        for n in 90..190 {
            let sock = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
            if sock.exists() || Path::new(&format!("/tmp/.X{n}-lock")).exists() {
                continue;
            }
            let mut child = Command::new("Xvfb")
                .args([format!(":{n}"), "-screen".into(), "0".into(), "1280x800x24".into(), "-nolisten".into(), "tcp".into()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Xvfb (package xvfb, installed by scripts/setup-debian)");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if sock.exists() {
                    return Xvfb { child, display: format!(":{n}") };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // display taken meanwhile: next number
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("no free X display for Xvfb");
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pump_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let ctx = gtk::glib::MainContext::default();
    let t0 = Instant::now();
    loop {
        while ctx.iteration(false) {}
        if cond() {
            return;
        }
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pump_for(ms: u64) {
    let t0 = Instant::now();
    pump_until("nothing", Duration::from_secs(5), || t0.elapsed() > Duration::from_millis(ms));
}

fn pump() {
    pump_for(150);
}

/// Render a window (what GTK draws for it) to a PNG.
fn save_png(w: &impl IsA<gtk::Widget>, path: &Path) {
    pump_for(500); // page transitions and the first frame
    let w = w.as_ref();
    let (wd, ht) = (w.width(), w.height());
    assert!(wd > 0 && ht > 0, "{path:?}: widget not allocated");
    let paintable = gtk::WidgetPaintable::new(Some(w));
    let snap = gtk::Snapshot::new();
    paintable.snapshot(&snap, wd as f64, ht as f64);
    let node = snap.to_node().expect("the window drew something");
    let renderer = w.native().expect("a window").renderer().expect("a realized window");
    let tex = renderer.render_texture(&node, Some(&gtk::graphene::Rect::new(0.0, 0.0, wd as f32, ht as f32)));
    tex.save_to_png(path).unwrap();
}

pub(super) fn vessel_exe() -> PathBuf {
    if let Some(e) = std::env::var_os("VESSEL_EXE") {
        return e.into();
    }
    // target/<profile>/deps/vessel-HASH -> target/<profile>/vessel (built for app/tests/)
    let me = std::env::current_exe().unwrap();
    let exe = me.parent().unwrap().parent().unwrap().join("vessel");
    assert!(exe.is_file(), "{} missing: run `cargo test -p vessel` (builds the binary) or set VESSEL_EXE", exe.display());
    exe
}

fn row(lib: &Controller<Library>, name: &str) -> Row {
    lib.widgets().rows.iter().find(|r| r.name == name).cloned().unwrap_or_else(|| panic!("no row for {name}"))
}

fn has_row(lib: &Controller<Library>, name: &str) -> bool {
    lib.widgets().rows.iter().any(|r| r.name == name)
}

fn open_wizard(lib: &Controller<Library>) -> (WizardWidgets, adw::Window) {
    lib.widgets().new_button.emit_clicked();
    pump_until("the wizard", Duration::from_secs(5), || lib.model().wizard.is_some());
    let m = lib.model();
    let c = m.wizard.as_ref().unwrap();
    let out = (c.widgets().clone(), c.widget().clone());
    drop(m);
    pump_until("the wizard mapped", Duration::from_secs(5), || out.1.is_mapped());
    out
}

fn page(w: &WizardWidgets) -> String {
    w.stack.visible_child_name().map(|s| s.to_string()).unwrap_or_default()
}

fn qemu_img(args: &[&str], file: &Path) -> String {
    let o = Command::new("qemu-img").args(args).arg(file).output().expect("qemu-img");
    assert!(o.status.success(), "qemu-img {args:?} {}: {}{}", file.display(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn label_texts(b: &gtk::Box) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![b.clone().upcast::<gtk::Widget>()];
    while let Some(w) = stack.pop() {
        if let Some(l) = w.downcast_ref::<gtk::Label>() {
            out.push(l.text().to_string());
        }
        let mut c = w.first_child();
        while let Some(x) = c {
            c = x.next_sibling();
            stack.push(x);
        }
    }
    out
}

/// Runs [`gui_session`] in a child process of this test binary with the display and the data
/// directory set for it alone, so no other test in the binary sees DISPLAY or XDG_DATA_HOME
/// change; the child's output is shown when it fails.
#[test]
fn manager_drives_wizard_settings_delete_and_vms_under_xvfb() {
    let x = Xvfb::start();
    let tmp = std::env::temp_dir().join(format!("vessel-manager-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["manager::tests::gui_session", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .env("GDK_BACKEND", "x11")
        .env("GSK_RENDERER", "cairo")
        .env("GTK_A11Y", "none")
        .env("NO_AT_BRIDGE", "1")
        .env("XDG_DATA_HOME", tmp.join("data"))
        .env("VESSEL_GUI_TEST_DIR", &tmp)
        .env("VESSEL_EXE", vessel_exe())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "the GUI session failed:\n{text}");
    for l in text.lines().filter(|l| l.contains("difference") || l.starts_with("NOTE")) {
        eprintln!("{l}");
    }
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
#[ignore = "run by manager_drives_wizard_settings_delete_and_vms_under_xvfb in its own process"]
fn gui_session() {
    let tmp = PathBuf::from(std::env::var_os("VESSEL_GUI_TEST_DIR").expect("started by manager_drives_wizard_settings_delete_and_vms_under_xvfb"));
    let display = std::env::var("DISPLAY").unwrap();
    let shots = std::env::var_os("VESSEL_SCREENSHOT_DIR").map(PathBuf::from).unwrap_or_else(|| tmp.join("shots"));
    std::fs::create_dir_all(&shots).unwrap();
    let exe = vessel_exe();
    let store = Store::open_default().unwrap();
    assert_eq!(store.root(), tmp.join("data/vessel"));

    // a profile with a typo and a good one already in the store
    std::fs::write(store.profile_path("broken"), "Profile(name: \"broken\", memroy_mib: 64)\n").unwrap();
    store.create(&Profile { name: "Existing".into(), ..Profile::default() }).unwrap();

    gtk::init().unwrap();
    adw::init().unwrap();
    relm4::set_global_css(super::library::CSS);
    let lib = Library::builder().launch(Init { store: Store::open_default().unwrap(), vessel_exe: exe.clone() }).detach();
    let win = lib.widget().clone();
    win.present();
    pump_until("the library window", Duration::from_secs(10), || win.is_mapped() && win.width() > 100);

    // what the X server shows for the manager's window is what GTK drew (checks the xwd capture
    // used for the guest window below)
    let id = find_window(&display, "Vessel\"").expect("the manager's window on the X display");
    let shown = capture_window(&display, &id);
    save_png(&win, &tmp.join("library-drawn.png"));
    let drawn = super::thumbnail::read_image(&tmp.join("library-drawn.png")).unwrap();
    let d = picture_difference(&drawn, &shown);
    eprintln!("manager window {}x{} on X vs drawn {}x{}: difference {d:.1}", shown.width, shown.height, drawn.width, drawn.height);
    assert!(d < 4.0, "difference {d:.1}");

    // the broken profile is a problem, the good one is still listed
    let problems = label_texts(&lib.widgets().problems);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("broken.ron") && problems[0].contains("memroy_mib"), "{problems:?}");
    assert!(has_row(&lib, "Existing"));

    // --- the wizard: ISO, OS type presets, memory, disk, name ---
    let iso = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/guests/out/grub-rescue.iso");
    assert!(iso.is_file(), "{} missing: run tests/guests/build.sh", iso.display());
    let (w, wroot) = open_wizard(&lib);
    assert_eq!(page(&w), "media");
    w.media_iso.set_active(true);
    w.iso.set_text("/no/such.iso");
    w.next.emit_clicked();
    pump();
    assert_eq!(page(&w), "media", "a missing ISO must not pass");
    assert!(w.error.is_visible() && w.error.text().contains("/no/such.iso"), "{}", w.error.text());
    w.iso.set_text(iso.to_str().unwrap());
    w.next.emit_clicked();
    pump();
    assert_eq!(page(&w), "system");
    assert!(!w.error.is_visible());
    // every OS type preselects its template's memory, CPUs and disk
    for (i, os) in OsType::ALL.iter().enumerate().rev() {
        w.os.set_selected(i as u32);
        pump();
        let t = profile::template(*os);
        assert_eq!(w.memory.value() as u32, t.profile.memory_mib, "{os:?}");
        assert_eq!(w.cpus.value() as u16, t.profile.cpus, "{os:?}");
        let disk = t.profile.disks.first().and_then(|d| d.size_mib);
        assert_eq!(w.disk.is_active(), disk.is_some(), "{os:?}");
        if let Some(mib) = disk {
            assert_eq!((w.disk_gib.value() * 1024.0).round() as u64, mib, "{os:?}");
        }
        assert_eq!(w.name.text(), t.profile.name, "suggested name for {os:?}");
    }
    assert_eq!(OsType::ALL[w.os.selected() as usize], OsType::Linux);
    w.memory.set_value(64.0);
    pump();
    save_png(&wroot, &shots.join("manager-wizard.png"));
    w.next.emit_clicked();
    pump();
    assert_eq!(page(&w), "disk");
    w.disk_gib.set_value(0.5);
    w.format.set_selected(0); // qcow2
    w.next.emit_clicked();
    pump();
    assert_eq!(page(&w), "name");
    w.name.set_text("Test VM");
    w.start_after.set_active(false);
    w.back.emit_clicked();
    w.next.emit_clicked();
    pump();
    assert!(w.summary.text().contains("64 MiB") && w.summary.text().contains("grub-rescue.iso"), "{}", w.summary.text());
    save_png(&wroot, &shots.join("manager-wizard-summary.png"));
    w.create.emit_clicked();
    pump_until("the wizard to close", Duration::from_secs(10), || lib.model().wizard.is_none());
    pump_until("the new row", Duration::from_secs(5), || has_row(&lib, "Test VM"));

    let p = store.load("Test VM").unwrap();
    assert_eq!((p.os_type, p.memory_mib, p.cpus), (OsType::Linux, 64, 1));
    assert_eq!(p.cdrom.as_deref(), Some(iso.canonicalize().unwrap().as_path()));
    assert!(p.boot_order.starts_with('d'), "{}", p.boot_order);
    assert_eq!(p.disks.len(), 1, "{p:?}");
    assert_eq!(p.disks[0].path, Path::new("Test VM/disk0.qcow2"));
    assert_eq!((p.disks[0].format, p.disks[0].size_mib), (DiskFormat::Qcow2, Some(512)));
    let disk = store.resolve(&p.disks[0].path);
    qemu_img(&["check"], &disk);
    let info = qemu_img(&["info", "--output=json"], &disk);
    assert!(info.contains("\"virtual-size\": 536870912") && info.contains("\"format\": \"qcow2\""), "{info}");

    // the name check on the last page: a name that exists is refused, the wizard stays open
    let (w, _) = open_wizard(&lib);
    w.next.emit_clicked();
    w.next.emit_clicked();
    w.next.emit_clicked();
    pump();
    w.name.set_text("Test VM");
    w.create.emit_clicked();
    pump();
    assert!(lib.model().wizard.is_some());
    assert!(w.error.is_visible() && w.error.text().contains("already exists"), "{}", w.error.text());
    w.name.set_text(".hidden");
    w.create.emit_clicked();
    pump();
    assert!(w.error.text().contains(".hidden"), "{}", w.error.text());
    lib.model().wizard.as_ref().unwrap().emit(super::wizard::WizardMsg::Cancel);
    pump_until("the wizard to close", Duration::from_secs(5), || lib.model().wizard.is_none());
    assert!(!store.profile_path(".hidden").exists());

    // --- settings: edit fields, see the RON file change; a bad value is refused ---
    row(&lib, "Test VM").settings.emit_clicked();
    pump_until("the settings window", Duration::from_secs(5), || lib.model().settings.is_some());
    let (s, sroot) = {
        let m = lib.model();
        let c = m.settings.as_ref().unwrap();
        let out = (c.widgets().clone(), c.widget().clone());
        out
    };
    pump_until("settings mapped", Duration::from_secs(5), || sroot.is_mapped());
    assert_eq!(s.memory.value() as u32, 64);
    assert_eq!(s.disks.len(), 1);
    // a disk row added and removed again leaves the disk list as it was
    s.add_disk.emit_clicked();
    pump();
    let added = lib.model().settings.as_ref().unwrap().widgets().disks.clone();
    assert_eq!(added.len(), 2);
    assert!(added[1].path.text().is_empty());
    added[1].remove.emit_clicked();
    pump();
    assert_eq!(lib.model().settings.as_ref().unwrap().widgets().disks.len(), 1);
    let s = lib.model().settings.as_ref().unwrap().widgets().clone();
    s.memory.set_value(96.0);
    s.vga.set_selected(1);
    s.cdrom.set_text("");
    s.localtime.set_active(true);
    pump();
    save_png(&sroot, &shots.join("manager-settings.png"));
    s.save.emit_clicked();
    pump_until("settings to close", Duration::from_secs(5), || lib.model().settings.is_none());
    let text = std::fs::read_to_string(store.profile_path("Test VM")).unwrap();
    assert!(text.contains("memory_mib: 96") && text.contains("vga: Std") && text.contains("localtime: true"), "{text}");
    let p = store.load("Test VM").unwrap();
    assert_eq!((p.memory_mib, p.vga, p.cdrom.clone(), p.localtime), (96, Vga::Std, None, true));
    assert_eq!(p.disks.len(), 1, "{p:?}");

    row(&lib, "Test VM").settings.emit_clicked();
    pump_until("the settings window", Duration::from_secs(5), || lib.model().settings.is_some());
    let s = lib.model().settings.as_ref().unwrap().widgets().clone();
    s.boot_order.set_text("cxz");
    s.save.emit_clicked();
    pump();
    assert!(s.error.is_visible() && s.error.text().contains("boot_order"), "{}", s.error.text());
    assert_eq!(std::fs::read_to_string(store.profile_path("Test VM")).unwrap(), text, "a refused edit must not touch the file");
    s.cancel.emit_clicked();
    pump_until("settings to close", Duration::from_secs(5), || lib.model().settings.is_none());

    // --- a VM with no media runs in its own `vessel run`; its state comes from the control socket ---
    let help = Command::new(&exe).args(["run", "--help"]).output().unwrap();
    let help_text = String::from_utf8_lossy(&help.stdout).into_owned();
    let window = help_text.contains("--scale");
    if help_text.contains("--profile") {
        let (w, _) = open_wizard(&lib);
        w.media_iso.set_active(true);
        w.media_empty.set_active(true);
        assert!(!w.iso.is_sensitive());
        w.next.emit_clicked();
        w.os.set_selected(OsType::ALL.iter().position(|o| *o == OsType::Other).unwrap() as u32);
        pump();
        w.next.emit_clicked();
        w.disk.set_active(false);
        w.next.emit_clicked();
        w.name.set_text("Empty");
        w.start_after.set_active(true);
        pump();
        w.create.emit_clicked();
        pump_until("Empty to run", Duration::from_secs(60), || lib.model().state("Empty") == VmState::Running);
        let r = row(&lib, "Empty");
        assert!(!r.start.is_sensitive() && r.stop.is_sensitive() && !r.delete.is_sensitive());
        // the last screen becomes the thumbnail
        pump_until("a thumbnail", Duration::from_secs(30), || r.thumbnail.paintable().is_some());
        r.pause.emit_clicked();
        pump_until("Empty paused", Duration::from_secs(10), || lib.model().state("Empty") == VmState::Paused);
        if window {
            window_shows_framebuffer(&display, &store, &lib, "Empty", &shots.join("manager-guest-seabios.png"));
        }
        // polls keep asking the VM: still paused a second later
        let t0 = Instant::now();
        pump_until("polls", Duration::from_secs(5), || t0.elapsed() > Duration::from_millis(1200));
        assert_eq!(lib.model().state("Empty"), VmState::Paused);
        r.pause.emit_clicked();
        pump_until("Empty resumed", Duration::from_secs(10), || lib.model().state("Empty") == VmState::Running);
        r.stop.emit_clicked();
        pump_until("Empty stopped", Duration::from_secs(20), || lib.model().state("Empty") == VmState::Stopped);
        assert!(!super::vmproc::socket_path(&store, "Empty").exists());
        assert!(r.start.is_sensitive() && r.delete.is_sensitive());

        // a VM from the ISO boots GRUB from the IDE CD-ROM: its menu on the serial port (run.log),
        // its screen as the thumbnail and, with the window, in the guest window
        let (w, _) = open_wizard(&lib);
        w.media_iso.set_active(true);
        w.iso.set_text(iso.to_str().unwrap());
        w.next.emit_clicked();
        w.os.set_selected(OsType::ALL.iter().position(|o| *o == OsType::Linux).unwrap() as u32);
        pump();
        w.next.emit_clicked();
        w.disk.set_active(false);
        w.next.emit_clicked();
        w.name.set_text("GRUB");
        w.start_after.set_active(true);
        pump();
        w.create.emit_clicked();
        pump_until("GRUB to run", Duration::from_secs(60), || lib.model().state("GRUB") == VmState::Running);
        let log = store.vm_dir("GRUB").join("run.log");
        pump_until("GRUB's menu on the serial port", Duration::from_secs(90), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Vessel GRUB test entry"))
        });
        let menu_at = std::time::SystemTime::now();
        let g = row(&lib, "GRUB");
        let screen = super::vmproc::screen_path(&store, "GRUB");
        pump_until("the GRUB screen as thumbnail", Duration::from_secs(20), || {
            g.thumbnail.paintable().is_some() && std::fs::metadata(&screen).and_then(|m| m.modified()).is_ok_and(|t| t > menu_at)
        });
        save_png(&win, &shots.join("manager-library.png"));
        if window {
            g.pause.emit_clicked();
            pump_until("GRUB paused", Duration::from_secs(10), || lib.model().state("GRUB") == VmState::Paused);
            window_shows_framebuffer(&display, &store, &lib, "GRUB", &shots.join("manager-guest-grub.png"));
        }
        g.stop.emit_clicked();
        pump_until("GRUB stopped", Duration::from_secs(20), || lib.model().state("GRUB") == VmState::Stopped);

        // a VM process that dies (SIGKILL, as a crash would) is reported; the manager carries on
        // (the list was rebuilt when GRUB was created: take Empty's current row)
        let r = row(&lib, "Empty");
        r.start.emit_clicked();
        pump_until("Empty to run again", Duration::from_secs(60), || lib.model().state("Empty") == VmState::Running);
        let pid = lib.model().pid("Empty").unwrap();
        let st = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
        assert!(st.success());
        pump_until("the crash to show", Duration::from_secs(10), || matches!(lib.model().state("Empty"), VmState::Failed { .. }));
        assert!(r.state.text().contains("signal 9"), "{}", r.state.text());
        assert!(r.start.is_sensitive());

        // `vessel run` refusing a profile (sound is not emulated) shows its error, nothing hangs
        row(&lib, "Existing").settings.emit_clicked();
        pump_until("the settings window", Duration::from_secs(5), || lib.model().settings.is_some());
        let s = lib.model().settings.as_ref().unwrap().widgets().clone();
        s.sound.set_selected(1);
        s.save.emit_clicked();
        pump_until("settings to close", Duration::from_secs(5), || lib.model().settings.is_none());
        row(&lib, "Existing").start.emit_clicked();
        pump_until("the refusal", Duration::from_secs(20), || matches!(lib.model().state("Existing"), VmState::Failed { .. }));
        let VmState::Failed { code, message } = lib.model().state("Existing") else { unreachable!() };
        assert!(code.is_some_and(|c| c != 0) && message.to_lowercase().contains("sound"), "{code:?} {message}");
        assert!(row(&lib, "Existing").state.text().contains(&message));
    } else {
        eprintln!("NOTE: `vessel run` has no --profile yet; the start/pause/stop part did not run");
        save_png(&win, &shots.join("manager-library.png"));
    }

    // --- delete asks first; cancel keeps everything, delete with files removes the VM's directory ---
    row(&lib, "Test VM").delete.emit_clicked();
    pump_until("the delete dialog", Duration::from_secs(5), || lib.model().delete_dialog.is_some());
    let (d, files) = lib.model().delete_dialog.clone().unwrap();
    pump_until("the dialog mapped", Duration::from_secs(5), || d.is_mapped());
    save_png(&d, &shots.join("manager-delete.png"));
    adw::prelude::MessageDialogExt::response(&d, "cancel");
    pump_until("the dialog to close", Duration::from_secs(5), || lib.model().delete_dialog.is_none());
    assert!(store.profile_path("Test VM").exists() && disk.exists() && has_row(&lib, "Test VM"));
    row(&lib, "Test VM").delete.emit_clicked();
    pump_until("the delete dialog", Duration::from_secs(5), || lib.model().delete_dialog.is_some());
    let (d, files2) = lib.model().delete_dialog.clone().unwrap();
    assert_ne!(files, files2);
    files2.set_active(true);
    adw::prelude::MessageDialogExt::response(&d, "delete");
    pump_until("the row to go", Duration::from_secs(5), || !has_row(&lib, "Test VM"));
    assert!(!store.profile_path("Test VM").exists());
    assert!(!store.vm_dir("Test VM").exists() && !disk.exists());
    assert!(has_row(&lib, "Existing"));
    assert_eq!(label_texts(&lib.widgets().problems).len(), 1, "the broken profile is still reported");

    win.close();
    pump();
    drop(lib);
    std::fs::remove_dir_all(&tmp).ok();
}

/// With the VM paused, the framebuffer it reports (the screendump the manager saves) is what its
/// guest window (opened by `vessel run` on our display) shows. Writes the window's picture to `png`.
fn window_shows_framebuffer(display: &str, store: &Store, lib: &Controller<Library>, name: &str, png_path: &Path) {
    assert_eq!(lib.model().state(name), VmState::Paused);
    let mut id = None;
    pump_until("the guest window", Duration::from_secs(30), || {
        id = find_window(display, &format!("{name} — Vessel")).or_else(|| find_window(display, &format!("{name} ")));
        id.is_some()
    });
    let id = id.unwrap();
    let screen = super::vmproc::screen_path(store, name);
    let paused_at = std::time::SystemTime::now();
    pump_until("a screendump after the pause", Duration::from_secs(10), || {
        std::fs::metadata(&screen).and_then(|m| m.modified()).is_ok_and(|t| t > paused_at)
    });
    pump_for(300);
    let fb = super::thumbnail::read_image(&screen).unwrap();
    // The window presents the paused frame on its own schedule (software Vulkan under Xvfb can
    // take a while on a loaded machine): wait until it shows a picture at all, then compare.
    let mut shown = capture_window(display, &id);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !shown.rgb.iter().any(|&v| v > 48) && Instant::now() < deadline {
        pump_for(200);
        shown = capture_window(display, &id);
    }
    assert!(shown.width >= fb.width && shown.height >= fb.height, "window {}x{} < guest {}x{}", shown.width, shown.height, fb.width, fb.height);
    let d = picture_difference(&fb, &shown);
    let mut flipped = fb.clone();
    let row_len = fb.width as usize * 3;
    for (y, chunk) in fb.rgb.chunks(row_len).rev().enumerate() {
        flipped.rgb[y * row_len..(y + 1) * row_len].copy_from_slice(chunk);
    }
    let d_flipped = picture_difference(&flipped, &shown);
    eprintln!("{name}: guest window {}x{} vs framebuffer {}x{}: difference {d:.1} (flipped: {d_flipped:.1})", shown.width, shown.height, fb.width, fb.height);
    assert!(d < 12.0 && d_flipped > 2.0 * d.max(4.0), "{name}: window and framebuffer differ: {d:.1} (flipped {d_flipped:.1})");
    let f = std::fs::File::create(png_path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), shown.width, shown.height);
    enc.set_color(png::ColorType::Rgb);
    enc.write_header().unwrap().write_image_data(&shown.rgb).unwrap();
}

/// The X window id of the first top-level window whose title starts with `prefix`.
fn find_window(display: &str, prefix: &str) -> Option<String> {
    let out = Command::new("xwininfo").args(["-display", display, "-root", "-tree"]).output().expect("xwininfo (x11-utils)");
    // `     0x200007 "Empty — Vessel (running)": ("vessel" "vessel")  720x400+0+0  +0+0`
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (id, rest) = l.trim().split_once(' ')?;
        rest.starts_with(&format!("\"{prefix}")).then(|| id.to_string())
    })
}

/// What the X server shows for a window (`xwd`, ZPixmap, 24/32 bits per pixel).
fn capture_window(display: &str, id: &str) -> super::thumbnail::RgbImage {
    let out = Command::new("xwd").args(["-display", display, "-id", id, "-silent"]).output().expect("xwd (x11-apps)");
    assert!(out.status.success(), "xwd: {}", String::from_utf8_lossy(&out.stderr));
    parse_xwd(&out.stdout)
}

fn parse_xwd(d: &[u8]) -> super::thumbnail::RgbImage {
    let be = |i: usize| u32::from_be_bytes(d[i * 4..i * 4 + 4].try_into().unwrap());
    let (header_size, format, width, height) = (be(0) as usize, be(2), be(4), be(5));
    let (byte_order, bpp, bpl) = (be(7), be(11) as usize, be(12) as usize);
    let masks = [be(14), be(15), be(16)];
    let ncolors = be(19) as usize;
    assert_eq!(format, 2, "ZPixmap");
    assert!(bpp == 32 || bpp == 24, "{bpp} bits per pixel");
    let data = &d[header_size + ncolors * 12..];
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height as usize {
        for x in 0..width as usize {
            let o = y * bpl + x * bpp / 8;
            let mut b = [0u8; 4];
            b[..bpp / 8].copy_from_slice(&data[o..o + bpp / 8]);
            let p = if byte_order == 0 { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) >> (32 - bpp) };
            for m in masks {
                rgb.push(((p & m) >> m.trailing_zeros()) as u8);
            }
        }
    }
    super::thumbnail::RgbImage { width, height, rgb }
}

/// The part of an image that is not (near) black: the guest picture without letterbox bars.
fn content(img: &super::thumbnail::RgbImage) -> super::thumbnail::RgbImage {
    let (w, h) = (img.width as usize, img.height as usize);
    let lit = |x: usize, y: usize| img.rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].iter().any(|&v| v > 48);
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if lit(x, y) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            }
        }
    }
    assert!(x1 > x0 && y1 > y0, "the image is black");
    let mut rgb = Vec::new();
    for y in y0..y1 {
        rgb.extend_from_slice(&img.rgb[(y * w + x0) * 3..(y * w + x1) * 3]);
    }
    super::thumbnail::RgbImage { width: (x1 - x0) as u32, height: (y1 - y0) as u32, rgb }
}

/// Mean absolute difference (0-255) of two images' lit parts, both reduced to the same grid.
fn picture_difference(a: &super::thumbnail::RgbImage, b: &super::thumbnail::RgbImage) -> f64 {
    let (ca, cb) = (content(a), content(b));
    let grid = |c: &super::thumbnail::RgbImage| {
        // exact grid: stretch to 64x32 cells (box filter on a scaled-up copy is overkill here)
        let (gw, gh) = (64usize, 32usize);
        let mut v = vec![0f64; gw * gh];
        let mut n = vec![0f64; gw * gh];
        for y in 0..c.height as usize {
            for x in 0..c.width as usize {
                let i = (y * c.width as usize + x) * 3;
                let g = (c.rgb[i] as f64 + c.rgb[i + 1] as f64 + c.rgb[i + 2] as f64) / 3.0;
                let cell = (y * gh / c.height as usize) * gw + x * gw / c.width as usize;
                v[cell] += g;
                n[cell] += 1.0;
            }
        }
        v.iter().zip(&n).map(|(s, n)| if *n > 0.0 { s / n } else { 0.0 }).collect::<Vec<_>>()
    };
    let (ga, gb) = (grid(&ca), grid(&cb));
    ga.iter().zip(&gb).map(|(x, y)| (x - y).abs()).sum::<f64>() / ga.len() as f64
}
