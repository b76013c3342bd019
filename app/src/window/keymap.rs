//! Host keys to PC scancodes: winit's *physical* key codes (the key's position on a US-layout
//! keyboard, independent of the host's keymap) to scancode set 1 make codes, as
//! [`vessel_core::vm::InputEvent::Key`] takes them (extended keys as `0xE0nn`).
//!
//! Physical codes, not characters: the guest runs its own keyboard layout, so the window must send
//! the key that was pressed, not the symbol the host's layout makes of it. The machine converts
//! set 1 to whatever its keyboard speaks (set 2 behind the i8042, which translates back to set 1
//! for the guest unless the guest turns translation off).
//!
//! Covered: the full 104/105-key layout (main block, F1-F12, editing and cursor block, keypad,
//! Windows and Menu keys, ISO `<>` key), the Japanese/Brazilian extra keys, the ACPI power keys and
//! the usual multimedia keys. Pause and Print Screen are [`PAUSE`] and [`PRINT_SCREEN`]: they are
//! multi-byte sequences on a real keyboard and the machine sends the whole sequence.

use vessel_core::vm::{PAUSE, PRINT_SCREEN};
use winit::keyboard::KeyCode;

/// The set 1 make code for a physical key, `None` for keys a PC keyboard does not have.
pub fn scancode(key: KeyCode) -> Option<u16> {
    use KeyCode::*;
    Some(match key {
        Escape => 0x01,
        Digit1 => 0x02,
        Digit2 => 0x03,
        Digit3 => 0x04,
        Digit4 => 0x05,
        Digit5 => 0x06,
        Digit6 => 0x07,
        Digit7 => 0x08,
        Digit8 => 0x09,
        Digit9 => 0x0A,
        Digit0 => 0x0B,
        Minus => 0x0C,
        Equal => 0x0D,
        Backspace => 0x0E,
        Tab => 0x0F,
        KeyQ => 0x10,
        KeyW => 0x11,
        KeyE => 0x12,
        KeyR => 0x13,
        KeyT => 0x14,
        KeyY => 0x15,
        KeyU => 0x16,
        KeyI => 0x17,
        KeyO => 0x18,
        KeyP => 0x19,
        BracketLeft => 0x1A,
        BracketRight => 0x1B,
        Enter => 0x1C,
        ControlLeft => 0x1D,
        KeyA => 0x1E,
        KeyS => 0x1F,
        KeyD => 0x20,
        KeyF => 0x21,
        KeyG => 0x22,
        KeyH => 0x23,
        KeyJ => 0x24,
        KeyK => 0x25,
        KeyL => 0x26,
        Semicolon => 0x27,
        Quote => 0x28,
        Backquote => 0x29,
        ShiftLeft => 0x2A,
        Backslash => 0x2B,
        KeyZ => 0x2C,
        KeyX => 0x2D,
        KeyC => 0x2E,
        KeyV => 0x2F,
        KeyB => 0x30,
        KeyN => 0x31,
        KeyM => 0x32,
        Comma => 0x33,
        Period => 0x34,
        Slash => 0x35,
        ShiftRight => 0x36,
        NumpadMultiply | NumpadStar => 0x37,
        AltLeft => 0x38,
        Space => 0x39,
        CapsLock => 0x3A,
        F1 => 0x3B,
        F2 => 0x3C,
        F3 => 0x3D,
        F4 => 0x3E,
        F5 => 0x3F,
        F6 => 0x40,
        F7 => 0x41,
        F8 => 0x42,
        F9 => 0x43,
        F10 => 0x44,
        NumLock => 0x45,
        ScrollLock => 0x46,
        Numpad7 => 0x47,
        Numpad8 => 0x48,
        Numpad9 => 0x49,
        NumpadSubtract => 0x4A,
        Numpad4 => 0x4B,
        Numpad5 => 0x4C,
        Numpad6 => 0x4D,
        NumpadAdd => 0x4E,
        Numpad1 => 0x4F,
        Numpad2 => 0x50,
        Numpad3 => 0x51,
        Numpad0 => 0x52,
        NumpadDecimal => 0x53,
        IntlBackslash => 0x56,
        F11 => 0x57,
        F12 => 0x58,
        NumpadEqual => 0x59,
        KanaMode => 0x70,
        IntlRo => 0x73,
        Convert => 0x79,
        NonConvert => 0x7B,
        IntlYen => 0x7D,
        NumpadComma => 0x7E,
        // extended (E0-prefixed) keys
        MediaTrackPrevious => 0xE010,
        MediaTrackNext => 0xE019,
        NumpadEnter => 0xE01C,
        ControlRight => 0xE01D,
        AudioVolumeMute => 0xE020,
        LaunchApp2 => 0xE021,
        MediaPlayPause => 0xE022,
        MediaStop => 0xE024,
        AudioVolumeDown => 0xE02E,
        AudioVolumeUp => 0xE030,
        BrowserHome => 0xE032,
        NumpadDivide => 0xE035,
        PrintScreen => PRINT_SCREEN,
        AltRight => 0xE038,
        Home => 0xE047,
        ArrowUp => 0xE048,
        PageUp => 0xE049,
        ArrowLeft => 0xE04B,
        ArrowRight => 0xE04D,
        End => 0xE04F,
        ArrowDown => 0xE050,
        PageDown => 0xE051,
        Insert => 0xE052,
        Delete => 0xE053,
        SuperLeft | Meta => 0xE05B,
        SuperRight => 0xE05C,
        ContextMenu => 0xE05D,
        Power => 0xE05E,
        Sleep => 0xE05F,
        WakeUp => 0xE063,
        BrowserSearch => 0xE065,
        BrowserFavorites => 0xE066,
        BrowserRefresh => 0xE067,
        BrowserStop => 0xE068,
        BrowserForward => 0xE069,
        BrowserBack => 0xE06A,
        LaunchApp1 => 0xE06B,
        LaunchMail => 0xE06C,
        MediaSelect => 0xE06D,
        Pause => PAUSE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use winit::keyboard::KeyCode::*;

    /// The 104-key US layout, row by row, every key must have a code and no two keys the same one.
    const KEYS_104: [KeyCode; 104] = [
        Escape, F1, F2, F3, F4, F5, F6, F7, F8, F9, F10, F11, F12, PrintScreen, ScrollLock, Pause,
        Backquote, Digit1, Digit2, Digit3, Digit4, Digit5, Digit6, Digit7, Digit8, Digit9, Digit0,
        Minus, Equal, Backspace, Insert, Home, PageUp, NumLock, NumpadDivide, NumpadMultiply,
        NumpadSubtract, Tab, KeyQ, KeyW, KeyE, KeyR, KeyT, KeyY, KeyU, KeyI, KeyO, KeyP,
        BracketLeft, BracketRight, Backslash, Delete, End, PageDown, Numpad7, Numpad8, Numpad9,
        NumpadAdd, CapsLock, KeyA, KeyS, KeyD, KeyF, KeyG, KeyH, KeyJ, KeyK, KeyL, Semicolon, Quote,
        Enter, Numpad4, Numpad5, Numpad6, ShiftLeft, KeyZ, KeyX, KeyC, KeyV, KeyB, KeyN, KeyM,
        Comma, Period, Slash, ShiftRight, ArrowUp, Numpad1, Numpad2, Numpad3, NumpadEnter,
        ControlLeft, SuperLeft, AltLeft, Space, AltRight, SuperRight, ContextMenu, ControlRight,
        ArrowLeft, ArrowDown, ArrowRight, Numpad0, NumpadDecimal,
    ];

    #[test]
    fn every_104_key_has_a_distinct_code() {
        let mut seen = std::collections::HashMap::new();
        for k in KEYS_104 {
            let c = scancode(k).unwrap_or_else(|| panic!("{k:?} has no scancode"));
            if let Some(prev) = seen.insert(c, k) {
                panic!("{k:?} and {prev:?} share {c:#x}");
            }
        }
        assert_eq!(seen.len(), 104);
    }

    #[test]
    fn known_codes() {
        // spot checks against the IBM PC/AT set 1 table
        assert_eq!(scancode(KeyA), Some(0x1E));
        assert_eq!(scancode(Enter), Some(0x1C));
        assert_eq!(scancode(NumpadEnter), Some(0xE01C));
        assert_eq!(scancode(ArrowUp), Some(0xE048));
        assert_eq!(scancode(Numpad8), Some(0x48), "keypad 8 is cursor up without E0");
        assert_eq!(scancode(F12), Some(0x58));
        assert_eq!(scancode(ControlRight), Some(0xE01D));
        assert_eq!(scancode(Fn), None, "Fn never reaches the computer");
    }

    /// For the main block the set 1 make code equals the Linux evdev key number, which X11
    /// reports as keycode - 8: an independent check of the table for the non-extended keys.
    #[test]
    fn main_block_matches_evdev_numbers() {
        // evdev: KEY_ESC 1, KEY_Q 16, KEY_A 30, KEY_Z 44, KEY_SPACE 57, KEY_F1 59, KEY_KP0 82,
        // KEY_102ND 86, KEY_F11 87
        for (k, ev) in [(Escape, 1), (KeyQ, 16), (KeyA, 30), (KeyZ, 44), (Space, 57), (F1, 59), (Numpad0, 82), (IntlBackslash, 86), (F11, 87)] {
            assert_eq!(scancode(k), Some(ev), "{k:?}");
        }
    }
}
