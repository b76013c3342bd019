//! The guest window: the VM engine's frames on a `pixels` (wgpu) surface in a winit window,
//! keyboard and mouse back to the guest as PC scancodes and PS/2 motion.
//!
//! ```text
//!   CPU thread (vessel-cpu)                       main thread (winit event loop)
//!   refresh ~60 Hz ─ publish ─▶ triple buffer ─▶ Wake::Frame ─▶ copy dirty rect into pixels'
//!        │                                     (EventLoopProxy,    buffer, render, present
//!        └ frame notify callback ──────────────  coalesced)
//!   Event::StateChanged/Exited ─ forwarder thread ─▶ Wake::Vm ─▶ title / close
//!   Command::Input ◀──────────────────────────────────────────── keys, mouse (while grabbed)
//! ```
//!
//! - **No busy loop**: the event loop sleeps (`ControlFlow::Wait`) until the OS has an event or the
//!   CPU thread wakes it through an [`EventLoopProxy`] from the engine's frame-notify callback. A
//!   flag coalesces wake-ups, so a slow window never piles up events. Nothing is rendered while
//!   the guest screen does not change.
//! - **Dirty rectangles**: only the rows/columns the engine reports as changed are copied into
//!   `pixels`' frame buffer; the buffer is reallocated only on guest mode changes. (`pixels` then
//!   uploads its whole texture per render: its API has no partial upload.)
//! - **Scaling** ([`ScaleMode`]): `pixels`' pixel-perfect renderer (whole multiples) or its
//!   aspect-preserving fill renderer, both letterboxed in black. The window resizes itself to each
//!   new guest mode (text 720x400, 640x480, 1024x768, ...) unless it is fullscreen.
//! - **Hotkeys** (Ctrl+Alt held, the letter never passed to the guest, acting when it is
//!   released): F fullscreen, G grab/release, 1 the
//!   guest screen, 2 the monitor console (when the run has one, see [`Console`]). A click into
//!   the window grabs as well. While grabbed the pointer is hidden and locked/confined and
//!   relative motion goes to the PS/2 mouse; the title says how to get out.
//! - **Keys** are physical keys mapped to set 1 scancodes ([`keymap`]); held keys are released
//!   to the guest when the window loses focus, so none stay stuck.
//!
//! Rendering needs a wgpu adapter: a GPU driver, or Mesa's software renderers (lavapipe for
//! Vulkan, llvmpipe for GL) — docs/window.md describes the environment, incl. Xvfb for tests.

pub mod keyboard_grab;
pub mod keymap;
pub mod layout;
pub mod session;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use pixels::{Pixels, PixelsBuilder, ScalingMode, SurfaceTexture};
use vessel_core::display::Frame;
use vessel_core::vm::{Command, Commander, Event, FrameReader, InputEvent, RunState, StopReason};
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::{DeviceEvent, DeviceId, ElementState, MouseButton, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, DeviceEvents, EventLoop, EventLoopProxy};
use winit::keyboard::{KeyCode, ModifiersState, PhysicalKey};
use winit::window::{CursorGrabMode, Fullscreen, Window, WindowId};

pub use layout::{ScaleMode, View};

/// What wakes the event loop from other threads.
#[derive(Debug)]
pub enum Wake {
    /// The engine published a frame.
    Frame,
    /// An engine event.
    Vm(Event),
    /// The monitor console has something new to show.
    #[allow(dead_code)] // sent through `Waker::console` by the monitor front end
    Console,
}

/// A text console the window can show instead of the guest screen (Ctrl+Alt+2): the hook for the
/// monitor. The console renders itself into a frame (any size; the window scales it like the
/// guest screen) and takes typed text and editing keys.
pub trait Console: Send {
    /// Redraw into `frame` if anything changed since the last call (or `force`); return whether
    /// the frame changed. Resizing `frame` is allowed.
    fn render(&mut self, frame: &mut Frame, force: bool) -> bool;
    /// Typed text (already through the host's keyboard layout).
    fn text(&mut self, text: &str);
    /// A non-text key went down (Enter, Backspace, cursor keys, ...).
    fn key(&mut self, key: KeyCode);
}

/// How the window looks and starts.
pub struct WindowOptions {
    /// The VM's name for the title bar (QEMU `-name`).
    pub name: Option<String>,
    pub scale: ScaleMode,
    /// Start fullscreen (QEMU `-full-screen`).
    pub full_screen: bool,
    /// The monitor console for Ctrl+Alt+2, if the run has one.
    pub console: Option<Box<dyn Console>>,
}

/// The engine ends the window talks to.
pub struct Display {
    pub frames: FrameReader,
    pub commander: Commander,
    /// Engine events (the window ends when [`Event::Exited`] arrives). A front end that also
    /// needs the events (the monitor) fans them out and passes the window its own receiver.
    pub events: Receiver<Event>,
}

/// How the window ended.
pub struct WindowEnd {
    /// Why the VM stopped (`Requested` when the window was closed).
    pub reason: StopReason,
    /// The frame reader back, for a final screenshot.
    pub frames: FrameReader,
}

/// Clonable handle that wakes the window's event loop from any thread.
#[derive(Clone)]
pub struct Waker {
    proxy: EventLoopProxy<Wake>,
    frame_pending: Arc<AtomicBool>,
}

impl Waker {
    /// A new frame is ready (coalesced: at most one wake-up in flight).
    pub fn frame(&self) {
        if !self.frame_pending.swap(true, Ordering::AcqRel) {
            let _ = self.proxy.send_event(Wake::Frame);
        }
    }

    /// The monitor console changed.
    #[allow(dead_code)] // the monitor front end's hook
    pub fn console(&self) {
        let _ = self.proxy.send_event(Wake::Console);
    }
}

/// The event loop, created before the engine so the engine's frame callback can wake it.
pub struct GuestWindow {
    event_loop: EventLoop<Wake>,
    waker: Waker,
}

/// Why there is no window: nothing to connect to.
pub fn display_server_available() -> bool {
    let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    set("DISPLAY") || set("WAYLAND_DISPLAY") || set("WAYLAND_SOCKET")
}

impl GuestWindow {
    /// Connect to the display server (X11 or Wayland). Must run on the main thread.
    pub fn new() -> Result<GuestWindow> {
        if !display_server_available() {
            bail!(
                "no display server: DISPLAY and WAYLAND_DISPLAY are not set (run inside a desktop \
                 session or Xvfb, or use -display none / -nographic for a headless run)"
            );
        }
        let event_loop = EventLoop::<Wake>::with_user_event()
            .build()
            .map_err(|e| anyhow!("cannot open the display ({e}); DISPLAY={:?}", std::env::var("DISPLAY").ok()))?;
        let waker = Waker { proxy: event_loop.create_proxy(), frame_pending: Arc::new(AtomicBool::new(false)) };
        Ok(GuestWindow { event_loop, waker })
    }

    #[allow(dead_code)] // the monitor front end's hook
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// The callback for `Vm::spawn_with_notify`.
    pub fn frame_notify(&self) -> Box<dyn Fn() + Send> {
        let w = self.waker.clone();
        Box::new(move || w.frame())
    }

    /// Show the guest until the VM exits (or the window is closed, which powers the VM off).
    pub fn run(self, display: Display, opts: WindowOptions) -> Result<WindowEnd> {
        let Display { frames, commander, events } = display;
        // Engine events to the event loop; ends with the VM.
        let proxy = self.waker.proxy.clone();
        std::thread::Builder::new()
            .name("vessel-window-events".into())
            .spawn(move || {
                for ev in events {
                    let last = matches!(ev, Event::Exited(_));
                    if proxy.send_event(Wake::Vm(ev)).is_err() || last {
                        break;
                    }
                }
            })
            .context("spawn the window's event thread")?;
        let mut app = App::new(frames, commander, opts, self.waker.frame_pending.clone());
        self.event_loop.set_control_flow(ControlFlow::Wait);
        self.event_loop.listen_device_events(DeviceEvents::WhenFocused);
        self.event_loop.run_app(&mut app).context("window event loop")?;
        if let Some(e) = app.error.take() {
            return Err(e);
        }
        Ok(WindowEnd { reason: app.end.take().unwrap_or(StopReason::Requested), frames: app.frames })
    }
}

/// Event-loop state.
struct App {
    frames: FrameReader,
    cmd: Commander,
    opts: WindowOptions,
    frame_pending: Arc<AtomicBool>,
    window: Option<Arc<Window>>,
    pixels: Option<Pixels<'static>>,
    /// Size of `pixels`' buffer (the guest mode shown).
    buffer: (u32, u32),
    state: RunState,
    view: View,
    /// The monitor console's picture.
    console_frame: Frame,
    grabbed: bool,
    /// X11 keyboard grab, held while `grabbed` (where the platform allows it).
    kbd_grab: keyboard_grab::KeyboardGrab,
    keyboard_grabbed: bool,
    mods: ModifiersState,
    /// Scancodes the guest has seen go down and not up.
    held: Vec<u16>,
    buttons: u8,
    /// Sub-pixel remainder of relative motion.
    motion_rest: (f64, f64),
    closing: bool,
    /// Surface size and whether the integer renderer is on, as last configured.
    surface: Option<((u32, u32), bool)>,
    /// A hotkey whose letter key is down (it fires on release).
    hotkey_down: Option<KeyCode>,
    /// Window size to get back to after leaving fullscreen, and how often to still ask.
    restore: Option<((u32, u32), u8)>,
    end: Option<StopReason>,
    error: Option<anyhow::Error>,
}

/// The guest's power-on text mode (80x25, 9x16 cells): the size the window opens at.
const INITIAL_SIZE: (u32, u32) = (720, 400);

impl App {
    fn new(frames: FrameReader, cmd: Commander, opts: WindowOptions, frame_pending: Arc<AtomicBool>) -> App {
        App {
            frames,
            cmd,
            opts,
            frame_pending,
            window: None,
            pixels: None,
            buffer: INITIAL_SIZE,
            state: RunState::Running,
            view: View::Guest,
            console_frame: Frame::default(),
            grabbed: false,
            kbd_grab: keyboard_grab::KeyboardGrab::new(),
            keyboard_grabbed: false,
            mods: ModifiersState::empty(),
            held: Vec::new(),
            buttons: 0,
            motion_rest: (0.0, 0.0),
            closing: false,
            surface: None,
            hotkey_down: None,
            restore: None,
            end: None,
            error: None,
        }
    }

    fn fail(&mut self, el: &ActiveEventLoop, e: anyhow::Error) {
        tracing::error!("window: {e:#}");
        if self.error.is_none() {
            self.error = Some(e);
        }
        let _ = self.cmd.send(Command::PowerOff);
        el.exit();
    }

    fn create(&mut self, el: &ActiveEventLoop) -> Result<()> {
        let size = PhysicalSize::new(INITIAL_SIZE.0, INITIAL_SIZE.1);
        let attrs = Window::default_attributes()
            .with_title(self.title())
            .with_inner_size(size)
            .with_min_inner_size(PhysicalSize::new(160, 100));
        let window = Arc::new(el.create_window(attrs).context("create the window")?);
        if self.opts.full_screen {
            // asked of the window manager once the window exists (as an attribute it can be
            // dropped before the window is mapped)
            window.set_fullscreen(Some(Fullscreen::Borderless(None)));
        }
        let inner = window.inner_size();
        let surface = SurfaceTexture::new(inner.width.max(1), inner.height.max(1), window.clone());
        let pixels = PixelsBuilder::new(INITIAL_SIZE.0, INITIAL_SIZE.1, surface)
            .clear_color(pixels::wgpu::Color::BLACK)
            .build()
            .map_err(|e| anyhow!("{}", adapter_hint(&e)))?;
        tracing::info!(adapter = ?pixels.adapter().get_info(), "window surface ready");
        self.window = Some(window);
        self.pixels = Some(pixels);
        self.apply_scaling(true);
        Ok(())
    }

    fn title(&self) -> String {
        layout::title(self.opts.name.as_deref(), &self.state, self.grabbed, self.keyboard_grabbed, self.view)
    }

    fn update_title(&self) {
        if let Some(w) = &self.window {
            w.set_title(&self.title());
        }
    }

    /// Pick the scaling renderer for the window and guest sizes and reconfigure the surface if
    /// either changed (`force` after a buffer change). Reconfiguring costs round trips to the
    /// display server, so it happens once per change, not per event.
    fn apply_scaling(&mut self, force: bool) {
        let (Some(w), Some(p)) = (&self.window, &mut self.pixels) else { return };
        let s = w.inner_size();
        let size = (s.width.max(1), s.height.max(1));
        let integer = self.opts.scale.integer_fits(size, self.buffer);
        if !force && self.surface == Some((size, integer)) {
            return;
        }
        self.surface = Some((size, integer));
        p.set_scaling_mode(if integer { ScalingMode::PixelPerfect } else { ScalingMode::Fill });
        // resize_surface recomputes the scaling matrix for the mode
        if let Err(e) = p.resize_surface(size.0, size.1) {
            tracing::warn!("resize the surface to {}x{}: {e}", size.0, size.1);
        }
    }

    /// Make `pixels`' buffer `size`; resize the window to the new mode unless fullscreen.
    fn set_buffer_size(&mut self, size: (u32, u32)) -> Result<()> {
        if size == self.buffer {
            return Ok(());
        }
        let Some(p) = &mut self.pixels else { return Ok(()) };
        p.resize_buffer(size.0, size.1).map_err(|e| anyhow!("resize the guest screen to {}x{}: {e}", size.0, size.1))?;
        tracing::info!(width = size.0, height = size.1, "guest mode change");
        self.buffer = size;
        if let Some(w) = &self.window {
            if w.fullscreen().is_none() {
                let (ww, wh) = layout::window_size_for(size, w.scale_factor());
                let _ = w.request_inner_size(PhysicalSize::new(ww, wh));
            }
        }
        self.apply_scaling(true);
        Ok(())
    }

    /// Take the newest guest frame and copy what changed into `pixels`' buffer.
    fn take_frame(&mut self) -> Result<bool> {
        self.frame_pending.store(false, Ordering::Release);
        if self.pixels.is_none() {
            return Ok(false);
        }
        let Some(f) = self.frames.latest() else { return Ok(false) };
        if self.view != View::Guest {
            return Ok(false);
        }
        let size = (f.width, f.height);
        let full = size != self.buffer;
        if full {
            self.set_buffer_size(size)?;
        }
        let f = self.frames.current();
        let p = self.pixels.as_mut().expect("pixels");
        copy_dirty(p.frame_mut(), f, if full { None } else { f.dirty });
        Ok(true)
    }

    /// Show the whole current guest frame (after switching back from the console).
    fn show_guest(&mut self) -> Result<()> {
        let size = (self.frames.current().width, self.frames.current().height);
        if size.0 == 0 {
            return Ok(());
        }
        self.set_buffer_size(size)?;
        if let Some(p) = &mut self.pixels {
            copy_dirty(p.frame_mut(), self.frames.current(), None);
        }
        Ok(())
    }

    fn show_console(&mut self, force: bool) -> Result<bool> {
        let Some(c) = &mut self.opts.console else { return Ok(false) };
        if !c.render(&mut self.console_frame, force) && !force {
            return Ok(false);
        }
        let size = (self.console_frame.width, self.console_frame.height);
        if size.0 == 0 {
            return Ok(false);
        }
        self.set_buffer_size(size)?;
        if let Some(p) = &mut self.pixels {
            copy_dirty(p.frame_mut(), &self.console_frame, None);
        }
        Ok(true)
    }

    fn redraw(&self) {
        if let Some(w) = &self.window {
            w.request_redraw();
        }
    }

    fn set_grab(&mut self, on: bool) {
        let Some(w) = &self.window else { return };
        if on == self.grabbed {
            return;
        }
        if on {
            let r = w.set_cursor_grab(CursorGrabMode::Locked).or_else(|_| w.set_cursor_grab(CursorGrabMode::Confined));
            if let Err(e) = r {
                tracing::warn!("cannot grab the pointer: {e}");
                return;
            }
            w.set_cursor_visible(false);
            self.keyboard_grabbed = self.kbd_grab.set(w, true);
        } else {
            let _ = w.set_cursor_grab(CursorGrabMode::None);
            w.set_cursor_visible(true);
            if self.keyboard_grabbed {
                self.keyboard_grabbed = self.kbd_grab.set(w, false);
            }
        }
        self.grabbed = on;
        self.motion_rest = (0.0, 0.0);
        self.update_title();
    }

    fn toggle_fullscreen(&mut self) {
        let Some(w) = &self.window else { return };
        if w.fullscreen().is_some() {
            w.set_fullscreen(None);
            // the window manager restores the size from before fullscreen (for a window that
            // started fullscreen: whatever it likes); insist on the guest's size a few times
            let want = layout::window_size_for(self.buffer, w.scale_factor());
            let _ = w.request_inner_size(PhysicalSize::new(want.0, want.1));
            self.restore = Some((want, 3));
        } else {
            self.restore = None;
            w.set_fullscreen(Some(Fullscreen::Borderless(None)));
        }
    }

    fn send_input(&mut self, ev: InputEvent) {
        if self.cmd.send(Command::Input(ev)).is_err() {
            tracing::debug!("input after the VM ended");
        }
    }

    /// Release every key the guest still sees held (focus lost, grab switch).
    fn release_all(&mut self) {
        for code in std::mem::take(&mut self.held) {
            self.send_input(InputEvent::Key { code, pressed: false });
        }
        if self.buttons != 0 {
            self.buttons = 0;
            self.send_input(InputEvent::Mouse { dx: 0, dy: 0, wheel: 0, buttons: 0 });
        }
    }

    /// Is Ctrl+Alt+`key` one of the window's hotkeys?
    fn is_hotkey(&self, key: KeyCode) -> bool {
        self.mods.control_key()
            && self.mods.alt_key()
            && matches!(key, KeyCode::KeyF | KeyCode::KeyG | KeyCode::Digit1 | KeyCode::Digit2)
    }

    /// Carry out a hotkey (on the release of its letter key, see `keyboard`).
    fn hotkey(&mut self, el: &ActiveEventLoop, key: KeyCode) {
        match key {
            KeyCode::KeyF => self.toggle_fullscreen(),
            KeyCode::KeyG => {
                let on = !self.grabbed;
                self.set_grab(on);
            }
            KeyCode::Digit1 if self.view != View::Guest => {
                self.view = View::Guest;
                if let Err(e) = self.show_guest() {
                    self.fail(el, e);
                }
                self.update_title();
                self.redraw();
            }
            KeyCode::Digit2 if self.view != View::Monitor => {
                if self.opts.console.is_none() {
                    tracing::info!("this run has no monitor console");
                    return;
                }
                self.release_all();
                self.set_grab(false);
                self.view = View::Monitor;
                if let Err(e) = self.show_console(true) {
                    self.fail(el, e);
                }
                self.update_title();
                self.redraw();
            }
            _ => {}
        }
    }

    fn keyboard(&mut self, el: &ActiveEventLoop, event: winit::event::KeyEvent, synthetic: bool) {
        let PhysicalKey::Code(key) = event.physical_key else { return };
        let pressed = event.state == ElementState::Pressed;
        // Hotkeys act when their letter key goes up: a fullscreen switch or grab while the key
        // is still down makes some window managers lose its release (the X server then keeps
        // repeating it), so nothing is reconfigured until the key is back up.
        if pressed && !synthetic && self.is_hotkey(key) {
            self.hotkey_down = Some(key);
            return;
        }
        if !pressed && self.hotkey_down == Some(key) {
            self.hotkey_down = None;
            self.hotkey(el, key);
            return;
        }
        if self.hotkey_down == Some(key) {
            return; // auto-repeat of a held hotkey
        }
        if self.view == View::Monitor {
            if pressed {
                if let Some(c) = &mut self.opts.console {
                    match event.text.as_deref() {
                        Some(t) if !t.chars().any(char::is_control) => c.text(t),
                        _ => c.key(key),
                    }
                }
            }
            return;
        }
        let Some(code) = keymap::scancode(key) else {
            tracing::debug!(?key, "key without a PC scancode");
            return;
        };
        if pressed {
            if synthetic {
                // keys already held when the window got focus: the guest never saw them go down
                return;
            }
            if !self.held.contains(&code) {
                self.held.push(code);
            }
            // auto-repeat goes through as repeated make codes, as a keyboard's typematic does
            self.send_input(InputEvent::Key { code, pressed: true });
        } else if let Some(i) = self.held.iter().position(|&c| c == code) {
            self.held.swap_remove(i);
            self.send_input(InputEvent::Key { code, pressed: false });
        }
    }

    fn mouse_button(&mut self, button: MouseButton, state: ElementState) {
        if self.view != View::Guest {
            return;
        }
        if !self.grabbed {
            if state == ElementState::Pressed && button == MouseButton::Left {
                self.set_grab(true);
            }
            return;
        }
        let bit = match button {
            MouseButton::Left => 1,
            MouseButton::Right => 2,
            MouseButton::Middle => 4,
            _ => return,
        };
        if state == ElementState::Pressed {
            self.buttons |= bit;
        } else {
            self.buttons &= !bit;
        }
        let buttons = self.buttons;
        self.send_input(InputEvent::Mouse { dx: 0, dy: 0, wheel: 0, buttons });
    }
}

/// Copy `dirty` (everything for `None`) of `src` into `dst`, a buffer of the same size.
fn copy_dirty(dst: &mut [u8], src: &Frame, dirty: Option<vessel_core::display::Rect>) {
    let w = src.width as usize;
    let h = src.height as usize;
    if dst.len() != w * h * 4 || src.rgba.len() != dst.len() {
        return;
    }
    let Some(r) = dirty else {
        dst.copy_from_slice(&src.rgba);
        return;
    };
    let x0 = (r.x as usize).min(w);
    let x1 = (r.x as usize + r.width as usize).min(w);
    let y0 = (r.y as usize).min(h);
    let y1 = (r.y as usize + r.height as usize).min(h);
    for y in y0..y1 {
        let a = (y * w + x0) * 4;
        let b = (y * w + x1) * 4;
        dst[a..b].copy_from_slice(&src.rgba[a..b]);
    }
}

/// A clear message for `pixels`/wgpu start-up failures, naming what is missing.
fn adapter_hint(e: &pixels::Error) -> String {
    match e {
        pixels::Error::AdapterNotFound => format!(
            "no GPU adapter for the window ({e}): install a Vulkan driver for the GPU, or without \
             one Mesa's software Vulkan renderer lavapipe (Debian: apt-get install \
             mesa-vulkan-drivers libvulkan1); WGPU_BACKEND={:?}; see docs/window.md",
            std::env::var("WGPU_BACKEND").unwrap_or_default()
        ),
        other => format!("cannot set up the window's GPU surface: {other} (see docs/window.md)"),
    }
}

impl ApplicationHandler<Wake> for App {
    fn resumed(&mut self, el: &ActiveEventLoop) {
        if self.window.is_some() {
            return;
        }
        if let Err(e) = self.create(el) {
            self.fail(el, e);
            return;
        }
        // a frame may have been published before the window existed
        match self.take_frame() {
            Ok(_) => self.redraw(),
            Err(e) => self.fail(el, e),
        }
    }

    fn window_event(&mut self, el: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        tracing::trace!(?event, "window event");
        match event {
            WindowEvent::CloseRequested => {
                // closing the window is pulling the plug (QEMU does the same)
                tracing::info!("window closed: powering the VM off");
                self.closing = true;
                if self.cmd.send(Command::Quit).is_err() {
                    el.exit();
                }
            }
            WindowEvent::Resized(size) => {
                if let (Some((want, tries)), Some(w)) = (self.restore, &self.window) {
                    if w.fullscreen().is_some() || (size.width, size.height) == want || tries == 0 {
                        self.restore = None;
                    } else {
                        self.restore = Some((want, tries - 1));
                        let _ = w.request_inner_size(PhysicalSize::new(want.0, want.1));
                    }
                }
                // the surface is reconfigured right before the next render, once for however
                // many resizes the window manager sent meanwhile
                self.redraw();
            }
            WindowEvent::RedrawRequested => {
                self.apply_scaling(false);
                if let Some(p) = &self.pixels {
                    if let Err(e) = p.render() {
                        self.fail(el, anyhow!("render: {e}"));
                    }
                }
            }
            WindowEvent::ModifiersChanged(m) => self.mods = m.state(),
            WindowEvent::KeyboardInput { event, is_synthetic, .. } => self.keyboard(el, event, is_synthetic),
            WindowEvent::Focused(false) => {
                self.release_all();
                self.set_grab(false);
            }
            WindowEvent::MouseInput { state, button, .. } => self.mouse_button(button, state),
            WindowEvent::MouseWheel { delta, .. } if self.grabbed => {
                let steps = match delta {
                    MouseScrollDelta::LineDelta(_, y) => y.round() as i32,
                    MouseScrollDelta::PixelDelta(p) => (p.y / 40.0).round() as i32,
                };
                if steps != 0 {
                    // PS/2 wheel: negative is up (away from the user)
                    let buttons = self.buttons;
                    self.send_input(InputEvent::Mouse { dx: 0, dy: 0, wheel: -steps, buttons });
                }
            }
            _ => {}
        }
    }

    fn device_event(&mut self, _el: &ActiveEventLoop, _id: DeviceId, event: DeviceEvent) {
        if let DeviceEvent::MouseMotion { delta } = event {
            if !self.grabbed || self.view != View::Guest {
                return;
            }
            let x = delta.0 + self.motion_rest.0;
            let y = delta.1 + self.motion_rest.1;
            let (dx, dy) = (x.trunc(), y.trunc());
            self.motion_rest = (x - dx, y - dy);
            if dx != 0.0 || dy != 0.0 {
                let buttons = self.buttons;
                self.send_input(InputEvent::Mouse { dx: dx as i32, dy: dy as i32, wheel: 0, buttons });
            }
        }
    }

    fn user_event(&mut self, el: &ActiveEventLoop, wake: Wake) {
        match wake {
            Wake::Frame => match self.take_frame() {
                Ok(true) => self.redraw(),
                Ok(false) => {}
                Err(e) => self.fail(el, e),
            },
            Wake::Console => {
                if self.view == View::Monitor {
                    match self.show_console(false) {
                        Ok(true) => self.redraw(),
                        Ok(false) => {}
                        Err(e) => self.fail(el, e),
                    }
                }
            }
            Wake::Vm(Event::StateChanged(s)) => {
                self.state = s;
                self.update_title();
            }
            Wake::Vm(Event::Exited(r)) => {
                tracing::info!(reason = ?r, closed_by_user = self.closing, "VM ended; closing the window");
                self.end = Some(r);
                el.exit();
            }
            Wake::Vm(Event::Error(e)) => tracing::warn!("VM: {e}"),
            Wake::Vm(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vessel_core::display::Rect;

    #[test]
    fn copy_dirty_touches_only_the_rectangle() {
        let mut src = Frame::default();
        src.resize(8, 4);
        for (i, b) in src.rgba.iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut dst = vec![0u8; 8 * 4 * 4];
        copy_dirty(&mut dst, &src, Some(Rect { x: 2, y: 1, width: 3, height: 2 }));
        for y in 0..4usize {
            for x in 0..8usize {
                let i = (y * 8 + x) * 4;
                let inside = (2..5).contains(&x) && (1..3).contains(&y);
                assert_eq!(dst[i..i + 4] == src.rgba[i..i + 4], inside || src.rgba[i..i + 4] == [0; 4], "{x},{y}");
            }
        }
        copy_dirty(&mut dst, &src, None);
        assert_eq!(dst, src.rgba);
    }
}
