//! Window geometry and title text: pure functions, so they are unit-tested without a display.

use vessel_core::vm::{RunState, StopReason};

/// How the guest screen is scaled into the window. Both keep the guest's aspect ratio (square
/// guest pixels, as QEMU shows them) and centre the picture with black borders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ScaleMode {
    /// Largest whole multiple of the guest size that fits: every guest pixel becomes an N x N
    /// block, sharp text. If the window is smaller than the guest, falls back to `smooth` so the
    /// whole screen stays visible.
    #[default]
    Integer,
    /// Fill the window (keeping the aspect ratio), filtered.
    Smooth,
}

impl ScaleMode {
    /// Whether `pixels`' pixel-perfect (integer) renderer applies for this window and guest size.
    pub fn integer_fits(self, window: (u32, u32), guest: (u32, u32)) -> bool {
        self == ScaleMode::Integer && window.0 >= guest.0 && window.1 >= guest.1
    }
}

/// Whole-number zoom the window opens at for a guest mode: 2 for the small modes (320x200,
/// 320x240, 400x300) so they are not postage stamps, 1 from 640x350 up; times the host's HiDPI
/// factor (rounded).
pub fn zoom_for(guest: (u32, u32), host_scale: f64) -> u32 {
    let base = if guest.0 * 2 <= 800 && guest.1 * 2 <= 600 { 2 } else { 1 };
    base * (host_scale.round() as u32).max(1)
}

/// The window's inner size for a guest mode.
pub fn window_size_for(guest: (u32, u32), host_scale: f64) -> (u32, u32) {
    let z = zoom_for(guest, host_scale);
    (guest.0 * z, guest.1 * z)
}

/// Which screen the window shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The guest's display (Ctrl-Alt-1).
    Guest,
    /// The monitor console (Ctrl-Alt-2), when the run has one.
    Monitor,
}

/// What QEMU's title bar says about the run state, in Vessel's words.
pub fn state_word(s: &RunState) -> &'static str {
    match s {
        RunState::Running => "running",
        RunState::Paused => "paused",
        RunState::Shutdown(StopReason::PowerOff) => "powered off",
        RunState::Shutdown(StopReason::Hung(_)) => "hung",
        RunState::Shutdown(_) => "stopped",
    }
}

/// `NAME — Vessel (running)`, with the release hint while input is grabbed (`keyboard`: the
/// keyboard is grabbed too).
pub fn title(name: Option<&str>, state: &RunState, grabbed: bool, keyboard: bool, view: View) -> String {
    let mut t = match name {
        Some(n) if !n.is_empty() => format!("{n} — Vessel ({})", state_word(state)),
        _ => format!("Vessel ({})", state_word(state)),
    };
    if view == View::Monitor {
        t.push_str(" — monitor, Ctrl+Alt+1 returns to the guest");
    }
    if grabbed {
        t.push_str(if keyboard {
            " — Press Ctrl+Alt+G to release the mouse and keyboard"
        } else {
            " — Press Ctrl+Alt+G to release the mouse"
        });
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_follow_guest_modes() {
        assert_eq!(window_size_for((720, 400), 1.0), (720, 400));
        assert_eq!(window_size_for((640, 480), 1.0), (640, 480));
        assert_eq!(window_size_for((1024, 768), 1.0), (1024, 768));
        assert_eq!(window_size_for((320, 200), 1.0), (640, 400));
        assert_eq!(window_size_for((720, 400), 2.0), (1440, 800), "HiDPI host");
    }

    #[test]
    fn integer_scaling_only_when_it_fits() {
        assert!(ScaleMode::Integer.integer_fits((720, 400), (720, 400)));
        assert!(ScaleMode::Integer.integer_fits((1000, 900), (720, 400)));
        assert!(!ScaleMode::Integer.integer_fits((700, 400), (720, 400)));
        assert!(!ScaleMode::Smooth.integer_fits((1440, 800), (720, 400)));
    }

    #[test]
    fn titles() {
        assert_eq!(title(Some("dos"), &RunState::Running, false, false, View::Guest), "dos — Vessel (running)");
        assert_eq!(title(None, &RunState::Paused, false, false, View::Guest), "Vessel (paused)");
        let t = title(Some("dos"), &RunState::Running, true, false, View::Guest);
        assert!(t.starts_with("dos — Vessel (running)") && t.ends_with("release the mouse"), "{t}");
        let t = title(Some("dos"), &RunState::Running, true, true, View::Guest);
        assert!(t.ends_with("Ctrl+Alt+G to release the mouse and keyboard"), "{t}");
        assert_eq!(
            title(Some("x"), &RunState::Shutdown(StopReason::PowerOff), false, false, View::Guest),
            "x — Vessel (powered off)"
        );
    }
}
