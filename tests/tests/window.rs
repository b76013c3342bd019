//! The guest window on a real X server: each test starts its own Xvfb (software rendering through
//! Mesa's lavapipe), runs `vessel run` with a window, reads the window's pixels back from the X
//! server (GetImage) and compares them with the framebuffer Vessel reports (`--screenshot`,
//! written when the run ends), scaled the way the window scales it. Keys go in through XTEST
//! (`xdotool key`), as a user's keyboard would; the guest's reaction is read on its debug console.
//!
//! Needs (scripts/setup-debian): xvfb, xdotool, openbox (the fullscreen test needs a window
//! manager: fullscreen is a request to it), mesa-vulkan-drivers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use vessel_tests::screen::{read_png, write_png, Image};
use vessel_tests::{vessel_binary, SEABIOS};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;

fn out_dir(test: &str) -> PathBuf {
    vessel_tests::screen::out_dir(&format!("window-test/{test}"))
}

fn require(tool: &str) {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "{tool} is not installed: run scripts/setup-debian (it installs xvfb, xdotool, openbox, mesa-vulkan-drivers)");
}

/// The virtual screen: big enough for a 2x 720x400 window and a 1024x768 mode with decorations.
const SCREEN_W: u32 = 1600;
const SCREEN_H: u32 = 1200;

/// A private X server (Xvfb on a free display number), optionally with a window manager.
struct XServer {
    display: String,
    xvfb: Child,
    wm: Option<Child>,
    runtime_dir: PathBuf,
}

impl XServer {
    fn start(with_wm: bool, dir: &Path) -> XServer {
        // tests run in parallel threads: one at a time picks a display number and waits for its
        // server's lock file, so two servers never race for the same number
        static PICK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _pick = PICK.lock().unwrap_or_else(|e| e.into_inner());
        require("Xvfb");
        require("xdotool");
        let runtime_dir = dir.join("xdg-runtime");
        std::fs::create_dir_all(&runtime_dir).unwrap();
        std::fs::set_permissions(&runtime_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        for n in 300..420 {
            if Path::new(&format!("/tmp/.X{n}-lock")).exists() || Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                continue;
            }
            let mut xvfb = Command::new("Xvfb")
                .arg(format!(":{n}"))
                .args(["-screen", "0", &format!("{SCREEN_W}x{SCREEN_H}x24"), "-nolisten", "tcp"])
                // without -noreset the server resets whenever its last client disconnects, and a
                // client connecting at that moment (openbox, vessel) is dropped
                .arg("-noreset")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start Xvfb");
            let sock = format!("/tmp/.X11-unix/X{n}");
            let t = Instant::now();
            while !(Path::new(&sock).exists() && Path::new(&format!("/tmp/.X{n}-lock")).exists())
                && t.elapsed() < Duration::from_secs(10)
            {
                if xvfb.try_wait().unwrap().is_some() {
                    break; // display taken by a racing server: try the next number
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if xvfb.try_wait().unwrap().is_some() || !Path::new(&sock).exists() {
                let _ = xvfb.kill();
                let _ = xvfb.wait();
                continue;
            }
            let display = format!(":{n}");
            let mut x = XServer { display, xvfb, wm: None, runtime_dir };
            if with_wm {
                require("openbox");
                x.start_wm(dir);
            }
            return x;
        }
        panic!("no free X display number in :300..:420");
    }

    /// openbox, waited for until it manages the screen (retried should it exit at start-up).
    fn start_wm(&mut self, dir: &Path) {
        for attempt in 1..=3 {
            let log = dir.join(format!("openbox-{attempt}.stderr"));
            let mut wm = Command::new("openbox")
                .arg("--sm-disable")
                .env("DISPLAY", &self.display)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start openbox");
            let t = Instant::now();
            loop {
                if self.has_wm() {
                    self.wm = Some(wm);
                    return;
                }
                if let Some(st) = wm.try_wait().unwrap() {
                    eprintln!("openbox exited ({st}) on attempt {attempt}: {}", std::fs::read_to_string(&log).unwrap_or_default());
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(30), "openbox did not take over the screen in 30 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("openbox failed to start three times");
    }

    fn connect(&self) -> RustConnection {
        x11rb::rust_connection::RustConnection::connect(Some(&self.display)).expect("connect to Xvfb").0
    }

    fn has_wm(&self) -> bool {
        let c = self.connect();
        let root = c.setup().roots[0].root;
        let atom = c.intern_atom(false, b"_NET_SUPPORTING_WM_CHECK").unwrap().reply().unwrap().atom;
        c.get_property(false, root, atom, xproto::AtomEnum::WINDOW, 0, 1).unwrap().reply().is_ok_and(|r| r.value_len > 0)
    }

    fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool").args(args).env("DISPLAY", &self.display).output().expect("run xdotool");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The Vessel window (its title starts with the VM name and says "Vessel (").
    fn find_window(&self, timeout: Duration) -> u32 {
        let t = Instant::now();
        loop {
            let ids = self.xdotool(&["search", "--name", "Vessel \\("]);
            if let Some(id) = ids.lines().next().and_then(|l| l.parse().ok()) {
                return id;
            }
            assert!(t.elapsed() < timeout, "no Vessel window appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn title(&self, win: u32) -> String {
        self.xdotool(&["getwindowname", &win.to_string()])
    }

    fn size(&self, win: u32) -> (u32, u32) {
        let g = self.connect().get_geometry(win).unwrap().reply().unwrap();
        (g.width as u32, g.height as u32)
    }

    #[track_caller]
    fn wait_size(&self, win: u32, want: (u32, u32), timeout: Duration) {
        let t = Instant::now();
        while self.size(win) != want {
            assert!(t.elapsed() < timeout, "window is {:?}, expected {want:?}", self.size(win));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The window's contents as the X server has them.
    fn capture(&self, win: u32) -> Image {
        let c = self.connect();
        let (w, h) = self.size(win);
        let r = c
            .get_image(xproto::ImageFormat::Z_PIXMAP, win, 0, 0, w as u16, h as u16, !0)
            .unwrap()
            .reply()
            .expect("GetImage");
        assert_eq!(r.depth, 24, "24-bit visual");
        // 24-bit depth is 32 bits per pixel, little endian: B, G, R, pad
        assert_eq!(r.data.len(), (w * h * 4) as usize);
        let rgb = r.data.chunks_exact(4).flat_map(|p| [p[2], p[1], p[0]]).collect();
        Image { width: w, height: h, rgb }
    }

    /// Ask the window to close, the way a window manager's close button does (WM_DELETE_WINDOW).
    fn close(&self, win: u32) {
        let c = self.connect();
        let protocols = c.intern_atom(false, b"WM_PROTOCOLS").unwrap().reply().unwrap().atom;
        let delete = c.intern_atom(false, b"WM_DELETE_WINDOW").unwrap().reply().unwrap().atom;
        let ev = xproto::ClientMessageEvent::new(32, win, protocols, [delete, x11rb::CURRENT_TIME, 0, 0, 0]);
        c.send_event(false, win, xproto::EventMask::NO_EVENT, ev).unwrap();
        // a round trip, so the server has handled the request before this connection closes
        c.get_input_focus().unwrap().reply().unwrap();
    }

    /// Whether some client holds the keyboard: another grab attempt is refused then.
    fn keyboard_grabbed_elsewhere(&self) -> bool {
        let c = self.connect();
        let root = c.setup().roots[0].root;
        let r = c
            .grab_keyboard(false, root, x11rb::CURRENT_TIME, xproto::GrabMode::ASYNC, xproto::GrabMode::ASYNC)
            .unwrap()
            .reply()
            .unwrap();
        if r.status == xproto::GrabStatus::SUCCESS {
            c.ungrab_keyboard(x11rb::CURRENT_TIME).unwrap();
            c.get_input_focus().unwrap().reply().unwrap();
            return false;
        }
        r.status == xproto::GrabStatus::ALREADY_GRABBED
    }

    fn key(&self, win: u32, keys: &str) {
        // with a window manager, ask it to activate the window (it may take a plain focus back),
        // and let it settle before typing
        let how = if self.wm.is_some() { "windowactivate" } else { "windowfocus" };
        self.xdotool(&[how, "--sync", &win.to_string()]);
        std::thread::sleep(Duration::from_millis(300));
        self.xdotool(&["key", "--delay", "60", keys]);
    }

    /// Ctrl+Alt+`letter` as a person types it: modifiers down, letter tapped, modifiers up.
    fn hotkey(&self, win: u32, letter: &str) {
        let how = if self.wm.is_some() { "windowactivate" } else { "windowfocus" };
        self.xdotool(&[how, "--sync", &win.to_string()]);
        std::thread::sleep(Duration::from_millis(300));
        self.xdotool(&["keydown", "--delay", "60", "ctrl", "alt"]);
        self.xdotool(&["key", "--delay", "60", letter]);
        self.xdotool(&["keyup", "--delay", "60", "alt", "ctrl"]);
    }
}

/// SIGTERM, so an X server removes its lock file and socket.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let t = Instant::now();
    while child.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for XServer {
    fn drop(&mut self) {
        if let Some(wm) = &mut self.wm {
            terminate(wm);
        }
        terminate(&mut self.xvfb);
    }
}

/// `vessel run` with a window on `x`.
struct Vessel {
    child: Child,
    stderr: PathBuf,
}

impl Vessel {
    fn start(x: &XServer, dir: &Path, args: &[&str]) -> Vessel {
        let stderr = dir.join("vessel.stderr");
        let child = Command::new(vessel_binary())
            .arg("run")
            .args(args)
            .env("DISPLAY", &x.display)
            .env_remove("WAYLAND_DISPLAY")
            .env("XDG_RUNTIME_DIR", &x.runtime_dir)
            .env("RUST_LOG", std::env::var("VESSEL_TEST_LOG").unwrap_or("vessel=info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start vessel");
        Vessel { child, stderr }
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(t.elapsed() < timeout, "vessel did not exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Vessel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `file` contains `text`.
#[track_caller]
fn wait_for_text(file: &Path, text: &str, timeout: Duration, v: &Vessel) {
    let t = Instant::now();
    loop {
        let s = String::from_utf8_lossy(&std::fs::read(file).unwrap_or_default()).into_owned();
        if s.contains(text) {
            return;
        }
        assert!(t.elapsed() < timeout, "{text:?} never appeared in {}:\n{s}\nvessel log:\n{}", file.display(), v.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pixels where `window` differs from `guest` scaled by the whole factor `k` (nearest
/// neighbour) and centred, with `tol` per channel; also asserts the border outside is black.
fn integer_diff(window: &Image, guest: &Image, k: u32, tol: u8) -> Vec<(u32, u32)> {
    let (ox, oy) = ((window.width - guest.width * k) / 2, (window.height - guest.height * k) / 2);
    let mut diff = Vec::new();
    for y in 0..window.height {
        for x in 0..window.width {
            let inside = x >= ox && y >= oy && x < ox + guest.width * k && y < oy + guest.height * k;
            let want = if inside { guest.pixel((x - ox) / k, (y - oy) / k) } else { [0, 0, 0] };
            let got = window.pixel(x, y);
            if got.iter().zip(want).any(|(a, b)| a.abs_diff(b) > tol) {
                if !inside {
                    panic!("border pixel {x},{y} is {got:?}, not black");
                }
                diff.push(((x - ox) / k, (y - oy) / k));
            }
        }
    }
    diff
}

/// The differences must all lie in one 9x16 text cell (the blinking cursor, whose phase at the
/// two moments is arbitrary).
fn assert_only_cursor_cell(diff: &[(u32, u32)], what: &str) {
    if let (Some(x0), Some(x1), Some(y0), Some(y1)) = (
        diff.iter().map(|d| d.0).min(),
        diff.iter().map(|d| d.0).max(),
        diff.iter().map(|d| d.1).min(),
        diff.iter().map(|d| d.1).max(),
    ) {
        assert!(
            x0 / 9 == x1 / 9 && y0 / 16 == y1 / 16,
            "{what}: {} guest pixels differ, in x {x0}..={x1}, y {y0}..={y1}: more than the cursor cell",
            diff.len()
        );
    }
}

fn seabios_args<'a>(dbg: &'a str, shot: &'a str) -> Vec<&'a str> {
    vec![
        "-bios", SEABIOS, "-m", "64", "-nic", "none", "-serial", "none", "-debugcon", dbg,
        "-boot", "menu=on,splash-time=60000", "-name", "seabios", "--timeout", "120", "--screenshot", shot,
    ]
}

/// SeaBIOS's text screen in the window, pixel for pixel; Escape typed through X opens the boot
/// menu (the set 1 scancode path into the i8042); window resized to 2x shows every guest pixel
/// as a 2x2 block; grab toggles the title's release hint; closing the window powers off.
#[test]
fn window_shows_the_guest_and_types_into_it() {
    let dir = out_dir("seabios");
    let x = XServer::start(false, &dir);
    let dbg = dir.join("debugcon.txt");
    let shot = dir.join("screenshot.png");
    let _ = std::fs::remove_file(&dbg);
    let _ = std::fs::remove_file(&shot);
    let (dbg_s, shot_s) = (format!("file:{}", dbg.display()), shot.display().to_string());
    let started = Instant::now();
    let mut v = Vessel::start(&x, &dir, &seabios_args(&dbg_s, &shot_s));
    let win = x.find_window(Duration::from_secs(20));
    wait_for_text(&dbg, "Press ESC for boot menu", Duration::from_secs(30), &v);
    println!("boot menu prompt after {:.2}s", started.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_millis(700)); // one refresh + render
    assert_eq!(x.size(win), (720, 400), "window at the guest's 720x400 text mode");
    assert_eq!(x.title(win), "seabios — Vessel (running)");
    let prompt = x.capture(win);
    write_png(&dir.join("window-prompt.png"), &prompt);
    let banner = prompt.lit_in_rows(0..16);
    assert!(banner > 500, "SeaBIOS banner row in the window has only {banner} lit pixels");
    // text row 4 (y 64..80) is where the boot menu will say "Select boot device:"
    let row4 = prompt.lit_in_rows(64..80);
    assert!(row4 <= 9 * 2, "row 4 holds at most the cursor before Escape, not {row4} lit pixels");

    x.key(win, "Escape");
    wait_for_text(&dbg, "Select boot device", Duration::from_secs(10), &v);
    std::thread::sleep(Duration::from_millis(700));
    let menu = x.capture(win);
    write_png(&dir.join("window-menu.png"), &menu);
    let row4 = menu.lit_in_rows(64..80);
    assert!(row4 > 300, "the boot menu's \"Select boot device:\" is not in the window ({row4} lit pixels in row 4)");

    // grab: the title says how to release it
    x.hotkey(win, "g");
    std::thread::sleep(Duration::from_millis(300));
    let t = x.title(win);
    assert_eq!(t, "seabios — Vessel (running) — Press Ctrl+Alt+G to release the mouse and keyboard");
    assert!(x.keyboard_grabbed_elsewhere(), "the window holds the keyboard while grabbed");
    x.hotkey(win, "g");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(x.title(win), "seabios — Vessel (running)");
    assert!(!x.keyboard_grabbed_elsewhere(), "keyboard released with Ctrl+Alt+G");

    // integer scaling: the user makes the window twice as big
    x.xdotool(&["windowsize", &win.to_string(), "1440", "800"]);
    x.wait_size(win, (1440, 800), Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(700));
    let doubled = x.capture(win);
    write_png(&dir.join("window-2x.png"), &doubled);
    // and a size that is not a whole multiple: 2x, centred, black around
    x.xdotool(&["windowsize", &win.to_string(), "1500", "860"]);
    x.wait_size(win, (1500, 860), Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(700));
    let letterboxed = x.capture(win);

    x.close(win);
    let status = v.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "closing the window powers off with status 0: {}", v.log());
    let guest = read_png(&shot);
    assert_eq!((guest.width, guest.height), (720, 400));

    let d = integer_diff(&menu, &guest, 1, 2);
    println!("window vs screenshot at 1x: {} of {} pixels differ", d.len(), 720 * 400);
    assert_only_cursor_cell(&d, "1x window");
    let d = integer_diff(&doubled, &guest, 2, 2);
    println!("window vs screenshot at 2x: {} guest pixels differ", d.len());
    assert_only_cursor_cell(&d, "2x window");
    let d = integer_diff(&letterboxed, &guest, 2, 2);
    assert_only_cursor_cell(&d, "2x in a 1500x860 window");
    // the prompt screen already had the banner the final screen has
    let d: Vec<_> = integer_diff(&prompt, &guest, 1, 2).into_iter().filter(|p| p.1 < 16).collect();
    assert!(d.is_empty(), "banner row differs between the prompt capture and the final frame");
}

/// `-full-screen --scale smooth` under a window manager: the window covers the screen and the
/// guest is filtered up to fill it with the aspect ratio kept; Ctrl+Alt+F returns to a 720x400
/// window that matches the framebuffer pixel for pixel, and goes fullscreen again.
#[test]
fn fullscreen_and_smooth_scaling() {
    let dir = out_dir("fullscreen");
    let x = XServer::start(true, &dir);
    let dbg = dir.join("debugcon.txt");
    let shot = dir.join("screenshot.png");
    let _ = std::fs::remove_file(&dbg);
    let _ = std::fs::remove_file(&shot);
    let (dbg_s, shot_s) = (format!("file:{}", dbg.display()), shot.display().to_string());
    let mut args = seabios_args(&dbg_s, &shot_s);
    args.extend(["-full-screen", "--scale", "smooth"]);
    let mut v = Vessel::start(&x, &dir, &args);
    let win = x.find_window(Duration::from_secs(20));
    wait_for_text(&dbg, "Press ESC for boot menu", Duration::from_secs(30), &v);
    x.wait_size(win, (SCREEN_W, SCREEN_H), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(800));
    let full = x.capture(win);
    write_png(&dir.join("window-fullscreen.png"), &full);

    x.hotkey(win, "f");
    x.wait_size(win, (720, 400), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(800));
    let windowed = x.capture(win);
    x.hotkey(win, "f");
    x.wait_size(win, (SCREEN_W, SCREEN_H), Duration::from_secs(10));

    x.close(win);
    assert_eq!(v.wait(Duration::from_secs(20)).code(), Some(0), "{}", v.log());
    let guest = read_png(&shot);
    let d = integer_diff(&windowed, &guest, 1, 2);
    assert_only_cursor_cell(&d, "windowed after leaving fullscreen");

    // smooth: the picture is scaled by min(1600/720, 1200/400) = 2.22 (width-bound) to
    // 1600x888, centred: black bands above and below, and the filtered picture close to the
    // guest frame resampled to that size
    let scale = (SCREEN_W as f64 / 720.0).min(SCREEN_H as f64 / 400.0);
    let ph = (400.0 * scale) as u32;
    let top = (SCREEN_H - ph) / 2;
    for y in (0..top - 2).chain(top + ph + 2..SCREEN_H) {
        for xx in (0..SCREEN_W).step_by(7) {
            assert_eq!(full.pixel(xx, y), [0, 0, 0], "letterbox band at {xx},{y}");
        }
    }
    let mut mad_guest = 0u64;
    let mut mad_black = 0u64;
    for y in top + 2..top + ph - 2 {
        for xx in 0..SCREEN_W {
            let g = guest.pixel(((xx as f64 + 0.5) / scale) as u32, (((y - top) as f64 + 0.5) / scale).min(399.0) as u32);
            let w = full.pixel(xx, y);
            for c in 0..3 {
                mad_guest += w[c].abs_diff(g[c]) as u64;
                mad_black += w[c] as u64;
            }
        }
    }
    println!("smooth fullscreen: mean abs difference to the resampled frame {mad_guest}, to black {mad_black}");
    assert!(mad_black > 0, "fullscreen picture is blank");
    assert!(mad_guest * 2 < mad_black, "fullscreen picture does not look like the guest frame");
}

/// A tiny real-mode program (loaded as a bzImage's setup code by SeaBIOS's linuxboot ROM) asks the
/// VGA BIOS for mode 13h (320x200), 12h (640x480), VBE 0x117 (1024x768) and text mode 3, printing
/// a marker on COM1 after each; the window follows every mode.
fn mode_switcher() -> Vec<u8> {
    let mut k = vec![0u8; 0x1000];
    k[0x1F1] = 1; // setup sectors
    k[0x1FE] = 0x55;
    k[0x1FF] = 0xAA;
    k[0x200] = 0xEB; // jmp 0x280
    k[0x201] = 0x7E;
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x0206u16.to_le_bytes());
    k[0x211] = 0x01; // loaded high
    let mut code: Vec<u8> = vec![0xFB]; // sti
    let mut calls = Vec::new();
    for (ax, bx, mark) in [(0x0013u16, None, b'1'), (0x0012, None, b'2'), (0x4F02, Some(0x4117u16), b'3'), (0x0003, None, b'4')] {
        code.extend([0xB8, ax as u8, (ax >> 8) as u8]); // mov ax, mode
        if let Some(bx) = bx {
            code.extend([0xBB, bx as u8, (bx >> 8) as u8]); // mov bx, VBE mode
        }
        code.extend([0xCD, 0x10, 0xB0, mark, 0xE8, 0, 0]); // int 10h; mov al, mark; call mark_wait
        calls.push(code.len());
    }
    code.extend([0xF4, 0xEB, 0xFD]); // hlt; jmp $-1
    let sub = code.len();
    // mark_wait: out 0x3F8, al; out '#'; wait 2 s (int 15h/86h, CX:DX microseconds); ret
    code.extend([0xBA, 0xF8, 0x03, 0xEE, 0xB0, b'#', 0xEE, 0xB4, 0x86, 0xB9, 0x1E, 0x00, 0xBA, 0x80, 0x84, 0xCD, 0x15, 0xC3]);
    for c in calls {
        let rel = (sub as i32 - c as i32) as i16;
        code[c - 2..c].copy_from_slice(&rel.to_le_bytes());
    }
    k[0x280..0x280 + code.len()].copy_from_slice(&code);
    k
}

#[test]
fn window_follows_guest_mode_changes() {
    let dir = out_dir("modes");
    let x = XServer::start(false, &dir);
    let kernel = dir.join("mode-switcher.bin");
    std::fs::write(&kernel, mode_switcher()).unwrap();
    let serial = dir.join("serial.txt");
    let _ = std::fs::remove_file(&serial);
    let (k, s) = (kernel.display().to_string(), format!("file:{}", serial.display()));
    let mut v = Vessel::start(&x, &dir, &["-bios", SEABIOS, "-m", "64", "-nic", "none", "-kernel", &k, "-serial", &s, "--timeout", "60"]);
    let win = x.find_window(Duration::from_secs(20));
    // mode 13h is 320x200, shown double-scanned (640x400) by the VGA; then the modes as they are
    for (mark, size) in [("1#", (640, 400)), ("2#", (640, 480)), ("3#", (1024, 768)), ("4#", (720, 400))] {
        wait_for_text(&serial, mark, Duration::from_secs(30), &v);
        x.wait_size(win, size, Duration::from_millis(1500));
        println!("after {mark}: window {size:?}");
    }
    x.close(win);
    assert_eq!(v.wait(Duration::from_secs(20)).code(), Some(0), "{}", v.log());
}

