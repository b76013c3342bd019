//! Input events from front ends, independent of any host toolkit.

use serde::{Deserialize, Serialize};

/// The Pause key's code in [`InputEvent::Key`]. A real keyboard sends one sequence on press and
/// nothing on release (set 1: `E1 1D 45 E1 9D C5`; set 2: `E1 14 77 E1 F0 14 F0 77`), which does
/// not fit a make code; front ends send this code and the machine emits the whole sequence.
pub const PAUSE: u16 = 0xE145;

/// Print Screen (`0xE037`, its set 1 make code without the fake shift). A real keyboard wraps it
/// in a fake left shift (set 1 make `E0 2A E0 37`, break `E0 B7 E0 AA`); the machine does the same.
pub const PRINT_SCREEN: u16 = 0xE037;

/// Mouse buttons held (bit 0 left, bit 1 right, bit 2 middle), as the PS/2 mouse packet.
pub type MouseButtons = u8;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputEvent {
    /// A key went down or up. `code` is the PC scancode set 1 make code, with extended keys
    /// as `0xE0nn` (e.g. 0x1E = A, 0xE048 = cursor up). This is also the Linux evdev key number
    /// for the main block (evdev KEY_A = 30 = 0x1E), so X11/winit front ends can map their
    /// hardware keycodes directly. The machine converts to whatever its keyboard speaks (set 2
    /// for the PS/2 keyboard behind the i8042). Pause is [`PAUSE`] (press only, release ignored);
    /// Print Screen is [`PRINT_SCREEN`].
    Key { code: u16, pressed: bool },
    /// Relative mouse motion (x right, y *down* as host toolkits report it; the PS/2 device
    /// flips it) and wheel steps, with the buttons now held.
    Mouse { dx: i32, dy: i32, wheel: i32, buttons: MouseButtons },
}
