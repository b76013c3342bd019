//! Exclusive keyboard grab while the guest has the mouse, so window-manager shortcuts (Alt+Tab,
//! Super, ...) reach the guest as on a real PC. winit has no keyboard-grab API: on X11 this is
//! `XGrabKeyboard` on winit's own Xlib connection and window. Wayland has no equivalent a client
//! may take without a compositor protocol; there the grab is the pointer only.

use raw_window_handle::{HasDisplayHandle, HasWindowHandle, RawDisplayHandle, RawWindowHandle};
use winit::window::Window;
use x11_dl::xlib;

/// The X11 keyboard grab of one window.
pub struct KeyboardGrab {
    xlib: Option<xlib::Xlib>,
}

impl KeyboardGrab {
    pub fn new() -> KeyboardGrab {
        KeyboardGrab { xlib: None }
    }

    fn handles(w: &Window) -> Option<(*mut xlib::Display, std::os::raw::c_ulong)> {
        let display = match w.display_handle().ok()?.as_raw() {
            RawDisplayHandle::Xlib(d) => d.display?.as_ptr() as *mut xlib::Display,
            _ => return None,
        };
        let window = match w.window_handle().ok()?.as_raw() {
            RawWindowHandle::Xlib(h) => h.window,
            _ => return None,
        };
        Some((display, window))
    }

    /// Grab (`true`) or release the keyboard; returns whether the grab is held afterwards.
    pub fn set(&mut self, w: &Window, on: bool) -> bool {
        let Some((display, window)) = Self::handles(w) else { return false };
        if self.xlib.is_none() {
            match xlib::Xlib::open() {
                Ok(x) => self.xlib = Some(x),
                Err(e) => {
                    tracing::warn!("keyboard grab: cannot load libX11: {e}");
                    return false;
                }
            }
        }
        let x = self.xlib.as_ref().expect("loaded");
        // SAFETY: `display` is winit's live Xlib connection and `window` its window, both valid
        // for as long as the winit window exists (the caller holds it); Xlib is used from the
        // event-loop thread only, as winit itself does.
        unsafe {
            let held = if on {
                let r = (x.XGrabKeyboard)(display, window, xlib::True, xlib::GrabModeAsync, xlib::GrabModeAsync, xlib::CurrentTime);
                if r != xlib::GrabSuccess {
                    tracing::warn!(status = r, "XGrabKeyboard refused");
                }
                r == xlib::GrabSuccess
            } else {
                (x.XUngrabKeyboard)(display, xlib::CurrentTime);
                false
            };
            (x.XFlush)(display);
            held
        }
    }
}
