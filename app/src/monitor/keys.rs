//! `sendkey` key names (QEMU's qcode names) to PC scancode set 1 make codes, the code
//! [`InputEvent::Key`] carries (extended keys as `0xE0nn`).

use vessel_core::vm::InputEvent;

const ROW_KEYS: &[(&str, u16)] = &[
    ("esc", 0x01), ("1", 0x02), ("2", 0x03), ("3", 0x04), ("4", 0x05), ("5", 0x06), ("6", 0x07),
    ("7", 0x08), ("8", 0x09), ("9", 0x0A), ("0", 0x0B), ("minus", 0x0C), ("equal", 0x0D),
    ("backspace", 0x0E), ("tab", 0x0F), ("q", 0x10), ("w", 0x11), ("e", 0x12), ("r", 0x13),
    ("t", 0x14), ("y", 0x15), ("u", 0x16), ("i", 0x17), ("o", 0x18), ("p", 0x19),
    ("bracket_left", 0x1A), ("bracket_right", 0x1B), ("ret", 0x1C), ("ctrl", 0x1D), ("a", 0x1E),
    ("s", 0x1F), ("d", 0x20), ("f", 0x21), ("g", 0x22), ("h", 0x23), ("j", 0x24), ("k", 0x25),
    ("l", 0x26), ("semicolon", 0x27), ("apostrophe", 0x28), ("grave_accent", 0x29), ("shift", 0x2A),
    ("backslash", 0x2B), ("z", 0x2C), ("x", 0x2D), ("c", 0x2E), ("v", 0x2F), ("b", 0x30),
    ("n", 0x31), ("m", 0x32), ("comma", 0x33), ("dot", 0x34), ("slash", 0x35), ("shift_r", 0x36),
    ("kp_multiply", 0x37), ("alt", 0x38), ("spc", 0x39), ("caps_lock", 0x3A), ("f1", 0x3B),
    ("f2", 0x3C), ("f3", 0x3D), ("f4", 0x3E), ("f5", 0x3F), ("f6", 0x40), ("f7", 0x41), ("f8", 0x42),
    ("f9", 0x43), ("f10", 0x44), ("num_lock", 0x45), ("scroll_lock", 0x46), ("kp_7", 0x47),
    ("kp_8", 0x48), ("kp_9", 0x49), ("kp_subtract", 0x4A), ("kp_4", 0x4B), ("kp_5", 0x4C),
    ("kp_6", 0x4D), ("kp_add", 0x4E), ("kp_1", 0x4F), ("kp_2", 0x50), ("kp_3", 0x51), ("kp_0", 0x52),
    ("kp_decimal", 0x53), ("less", 0x56), ("f11", 0x57), ("f12", 0x58), ("kp_enter", 0xE01C),
    ("ctrl_r", 0xE01D), ("kp_divide", 0xE035), ("alt_r", 0xE038), ("home", 0xE047), ("up", 0xE048),
    ("pgup", 0xE049), ("left", 0xE04B), ("right", 0xE04D), ("end", 0xE04F), ("down", 0xE050),
    ("pgdn", 0xE051), ("insert", 0xE052), ("delete", 0xE053), ("meta_l", 0xE05B), ("meta_r", 0xE05C),
    ("menu", 0xE05D),
];

/// Set 1 code of one key name (or a raw `0xNN` code).
pub fn code(name: &str) -> Option<u16> {
    let n = name.to_ascii_lowercase();
    let alias = match n.as_str() {
        "return" | "enter" => "ret",
        "space" => "spc",
        "del" => "delete",
        "escape" => "esc",
        "control" => "ctrl",
        "altgr" => "alt_r",
        "page_up" => "pgup",
        "page_down" => "pgdn",
        other => other,
    };
    if let Some(h) = alias.strip_prefix("0x") {
        return u16::from_str_radix(h, 16).ok().filter(|&c| c & 0xFF7F != 0);
    }
    ROW_KEYS.iter().find(|(k, _)| *k == alias).map(|&(_, c)| c)
}

/// `ctrl-alt-delete` -> the codes in press order.
pub fn parse_combo(s: &str) -> Result<Vec<u16>, String> {
    s.split('-')
        .map(|k| code(k).ok_or_else(|| format!("unknown key: '{k}'")))
        .collect()
}

pub fn key(code: u16, pressed: bool) -> InputEvent {
    InputEvent::Key { code, pressed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combos() {
        assert_eq!(parse_combo("ctrl-alt-delete").unwrap(), vec![0x1D, 0x38, 0xE053]);
        assert_eq!(parse_combo("shift-a").unwrap(), vec![0x2A, 0x1E]);
        assert_eq!(parse_combo("0x1e").unwrap(), vec![0x1E]);
        assert!(parse_combo("ctrl-nokey").unwrap_err().contains("nokey"));
    }
}
