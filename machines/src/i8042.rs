//! Intel 8042 keyboard controller (ports 0x60/0x64) with a PS/2 keyboard (IRQ 1) and PS/2 mouse
//! (IRQ 12). The controller's output port carries the A20 gate (bit 1) and the CPU reset line (bit 0).
//!
//! Host input enters as scancode set 2 bytes ([`I8042::key_event`]) and mouse motion
//! ([`I8042::mouse_event`]); the controller translates set 2 to set 1 when command byte bit 6 is
//! set, as real hardware does.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

const STAT_OBF: u8 = 0x01;
const STAT_SYS: u8 = 0x04;
const STAT_CMD: u8 = 0x08;
const STAT_UNLOCKED: u8 = 0x10;
const STAT_AUX_OBF: u8 = 0x20;

const CMD_KBD_INT: u8 = 0x01;
const CMD_AUX_INT: u8 = 0x02;
const CMD_SYS: u8 = 0x04;
const CMD_KBD_DISABLE: u8 = 0x10;
const CMD_AUX_DISABLE: u8 = 0x20;
const CMD_XLATE: u8 = 0x40;

/// What the controller's output port asks of the board after a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputChange {
    pub a20: Option<bool>,
    pub reset: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyboard {
    pub queue: VecDeque<u8>,
    pub scanning: bool,
    /// Command waiting for its parameter byte (0xED LEDs, 0xF0 set, 0xF3 rate).
    pub pending: u8,
    pub scancode_set: u8,
    pub leds: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mouse {
    pub queue: VecDeque<u8>,
    pub enabled: bool,
    pub pending: u8,
    pub rate: u8,
    pub resolution: u8,
    pub scaling21: bool,
    pub remote: bool,
    pub wrap: bool,
    /// Intellimouse detection state (rate sequence 200, 100, 80).
    pub rate_seq: [u8; 3],
    pub id: u8,
    pub buttons: u8,
    pub dx: i32,
    pub dy: i32,
    pub dz: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct I8042 {
    pub status: u8,
    pub command_byte: u8,
    pub output_port: u8,
    /// Controller command waiting for a data byte on port 0x60.
    pub pending: u8,
    /// Byte currently in the output buffer, and whether it came from the mouse.
    pub out: u8,
    pub out_aux: bool,
    /// Bytes the controller itself produced (command replies), delivered before device bytes.
    pub ctrl_queue: VecDeque<(u8, bool)>,
    pub kbd: Keyboard,
    pub mouse: Mouse,
    /// A set-1 translation of 0xF0 (break prefix) is pending.
    pub xlate_break: bool,
}

impl Default for I8042 {
    fn default() -> Self {
        Self::new()
    }
}

/// Scancode set 2 to set 1 translation table (for the 8042's translation mode).
pub(crate) fn set2_to_set1(b: u8) -> u8 {
    const T: [u8; 0x84] = [
        0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
        0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
        0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
        0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
        0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
        0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
        0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
        0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
        0x80, 0x81, 0x82, 0x41,
    ];
    T.get(b as usize).copied().unwrap_or(b)
}

impl Keyboard {
    fn reset(&mut self) {
        self.queue.clear();
        self.scanning = true;
        self.pending = 0;
        self.scancode_set = 2;
        self.leds = 0;
    }

    fn write(&mut self, v: u8) {
        if self.pending != 0 {
            let cmd = std::mem::take(&mut self.pending);
            match cmd {
                0xED => self.leds = v & 7,
                0xF0 => {
                    if v == 0 {
                        self.queue.push_back(0xFA);
                        self.queue.push_back(self.scancode_set);
                        return;
                    }
                    if (1..=3).contains(&v) {
                        self.scancode_set = v;
                    }
                }
                _ => {}
            }
            self.queue.push_back(0xFA);
            return;
        }
        match v {
            0xED | 0xF0 | 0xF3 => {
                self.pending = v;
                self.queue.push_back(0xFA);
            }
            0xEE => self.queue.push_back(0xEE),
            0xF2 => self.queue.extend([0xFA, 0xAB, 0x83]),
            0xF4 => {
                self.scanning = true;
                self.queue.push_back(0xFA);
            }
            0xF5 => {
                self.scanning = false;
                self.queue.push_back(0xFA);
            }
            0xF6 => {
                self.scanning = true;
                self.queue.push_back(0xFA);
            }
            0xFF => {
                self.reset();
                self.queue.extend([0xFA, 0xAA]);
            }
            0xF7..=0xFD => self.queue.push_back(0xFA),
            _ => self.queue.push_back(0xFE),
        }
    }
}

impl Mouse {
    fn reset(&mut self) {
        let buttons = self.buttons;
        *self = Mouse { rate: 100, resolution: 2, buttons, ..Default::default() };
    }

    fn status_bytes(&self) -> [u8; 3] {
        let b0 = (self.remote as u8) << 6 | (self.enabled as u8) << 5 | (self.scaling21 as u8) << 4 | (self.buttons & 7);
        [b0, self.resolution, self.rate]
    }

    fn write(&mut self, v: u8) {
        if self.wrap && v != 0xEC && v != 0xFF {
            self.queue.push_back(v);
            return;
        }
        if self.pending != 0 {
            let cmd = std::mem::take(&mut self.pending);
            match cmd {
                0xF3 => {
                    self.rate = v;
                    self.rate_seq = [self.rate_seq[1], self.rate_seq[2], v];
                    if self.rate_seq == [200, 100, 80] {
                        self.id = 3;
                    }
                }
                0xE8 => self.resolution = v & 3,
                _ => {}
            }
            self.queue.push_back(0xFA);
            return;
        }
        match v {
            0xE6 => {
                self.scaling21 = false;
                self.queue.push_back(0xFA)
            }
            0xE7 => {
                self.scaling21 = true;
                self.queue.push_back(0xFA)
            }
            0xE8 | 0xF3 => {
                self.pending = v;
                self.queue.push_back(0xFA);
            }
            0xE9 => {
                self.queue.push_back(0xFA);
                let s = self.status_bytes();
                self.queue.extend(s);
            }
            0xEA => {
                self.remote = false;
                self.queue.push_back(0xFA)
            }
            0xEB => {
                self.queue.push_back(0xFA);
                self.push_packet();
            }
            0xEC => {
                self.wrap = false;
                self.queue.push_back(0xFA)
            }
            0xEE => {
                self.wrap = true;
                self.queue.push_back(0xFA)
            }
            0xF0 => {
                self.remote = true;
                self.queue.push_back(0xFA)
            }
            0xF2 => self.queue.extend([0xFA, self.id]),
            0xF4 => {
                self.enabled = true;
                self.queue.push_back(0xFA)
            }
            0xF5 => {
                self.enabled = false;
                self.queue.push_back(0xFA)
            }
            0xF6 => {
                let id = self.id;
                self.reset();
                self.id = id;
                self.queue.push_back(0xFA)
            }
            0xFF => {
                self.reset();
                self.queue.extend([0xFA, 0xAA, 0x00]);
            }
            _ => self.queue.push_back(0xFE),
        }
    }

    fn push_packet(&mut self) {
        let dx = self.dx.clamp(-256, 255);
        let dy = self.dy.clamp(-256, 255);
        let dz = self.dz.clamp(-8, 7);
        self.dx -= dx;
        self.dy -= dy;
        self.dz -= dz;
        let b0 = 0x08 | (self.buttons & 7) | if dx < 0 { 0x10 } else { 0 } | if dy < 0 { 0x20 } else { 0 };
        self.queue.extend([b0, dx as u8, dy as u8]);
        if self.id == 3 {
            self.queue.push_back(dz as u8);
        }
    }
}

impl I8042 {
    pub fn new() -> Self {
        let mut k = I8042 {
            status: STAT_UNLOCKED,
            command_byte: CMD_KBD_INT | CMD_AUX_INT | CMD_SYS | CMD_XLATE,
            output_port: 0x03,
            pending: 0,
            out: 0,
            out_aux: false,
            ctrl_queue: VecDeque::new(),
            kbd: Keyboard::default(),
            mouse: Mouse::default(),
            xlate_break: false,
        };
        k.kbd.reset();
        k.mouse.reset();
        k
    }

    pub fn reset(&mut self) {
        *self = I8042::new();
    }

    /// A20 as driven by the output port.
    pub fn a20(&self) -> bool {
        self.output_port & 2 != 0
    }

    /// Move the next pending byte into the output buffer if it is empty.
    fn refill(&mut self) {
        if self.status & STAT_OBF != 0 {
            return;
        }
        let next = if let Some(x) = self.ctrl_queue.pop_front() {
            Some(x)
        } else if self.command_byte & CMD_KBD_DISABLE == 0 && !self.kbd.queue.is_empty() {
            let mut b = self.kbd.queue.pop_front().unwrap();
            if self.command_byte & CMD_XLATE != 0 {
                if b == 0xF0 {
                    // break prefix: fold into the next byte
                    self.xlate_break = true;
                    match self.kbd.queue.pop_front() {
                        Some(n) => b = n,
                        None => return,
                    }
                }
                b = set2_to_set1(b) | if std::mem::take(&mut self.xlate_break) { 0x80 } else { 0 };
            }
            Some((b, false))
        } else if self.command_byte & CMD_AUX_DISABLE == 0 && !self.mouse.queue.is_empty() {
            Some((self.mouse.queue.pop_front().unwrap(), true))
        } else {
            None
        };
        if let Some((b, aux)) = next {
            self.out = b;
            self.out_aux = aux;
            self.status |= STAT_OBF;
            if aux { self.status |= STAT_AUX_OBF } else { self.status &= !STAT_AUX_OBF }
        }
    }

    /// (IRQ 1 level, IRQ 12 level).
    pub fn irqs(&self) -> (bool, bool) {
        let full = self.status & STAT_OBF != 0;
        (
            full && !self.out_aux && self.command_byte & CMD_KBD_INT != 0,
            full && self.out_aux && self.command_byte & CMD_AUX_INT != 0,
        )
    }

    pub fn io_read(&mut self, port: u16) -> u8 {
        if port == 0x64 {
            self.refill();
            return self.status;
        }
        self.refill();
        let v = self.out;
        self.status &= !(STAT_OBF | STAT_AUX_OBF);
        self.refill();
        v
    }

    fn reply(&mut self, b: u8) {
        self.ctrl_queue.push_back((b, false));
        self.refill();
    }

    fn set_output_port(&mut self, v: u8, ch: &mut OutputChange) {
        // like QEMU, every output-port write drives the A20 line (not only changes)
        ch.a20 = Some(v & 2 != 0);
        if v & 1 == 0 {
            ch.reset = true;
        }
        self.output_port = v | 1;
    }

    pub fn io_write(&mut self, port: u16, v: u8) -> OutputChange {
        let mut ch = OutputChange::default();
        if port == 0x64 {
            self.status |= STAT_CMD;
            match v {
                0x20..=0x3F => self.reply(if v == 0x20 { self.command_byte } else { 0 }),
                0x60..=0x7F | 0xD1..=0xD4 => self.pending = v,
                0xA7 => self.command_byte |= CMD_AUX_DISABLE,
                0xA8 => self.command_byte &= !CMD_AUX_DISABLE,
                0xA9 => self.reply(0x00),
                0xAA => {
                    self.status |= STAT_SYS;
                    self.reply(0x55);
                }
                0xAB => self.reply(0x00),
                0xAD => self.command_byte |= CMD_KBD_DISABLE,
                0xAE => self.command_byte &= !CMD_KBD_DISABLE,
                0xC0 => self.reply(0xA0),
                0xD0 => self.reply(self.output_port),
                0xDD => self.set_output_port(self.output_port & !2, &mut ch),
                0xDF => self.set_output_port(self.output_port | 2, &mut ch),
                0xE0 => self.reply(0x00),
                0xF0..=0xFF => {
                    if v & 1 == 0 {
                        ch.reset = true;
                    }
                }
                _ => {}
            }
            self.refill();
            return ch;
        }
        self.status &= !STAT_CMD;
        let pending = std::mem::take(&mut self.pending);
        match pending {
            0x60 => {
                self.command_byte = v;
                if v & CMD_SYS != 0 { self.status |= STAT_SYS } else { self.status &= !STAT_SYS }
            }
            0x61..=0x7F => {}
            0xD1 => self.set_output_port(v, &mut ch),
            0xD2 => self.ctrl_queue.push_back((v, false)),
            0xD3 => self.ctrl_queue.push_back((v, true)),
            0xD4 => {
                self.command_byte &= !CMD_AUX_DISABLE;
                self.mouse.write(v)
            }
            _ => {
                self.command_byte &= !CMD_KBD_DISABLE;
                self.kbd.write(v)
            }
        }
        self.refill();
        ch
    }

    /// A key press/release from the host, as scancode set 2 bytes (e.g. [0xF0, 0x1C] = 'A' up).
    pub fn key_event(&mut self, set2: &[u8]) {
        if self.kbd.scanning && self.kbd.queue.len() < 64 {
            self.kbd.queue.extend(set2);
            self.refill();
        }
    }

    /// Relative mouse motion (dy positive = up, PS/2 convention) and button state (bit 0 left,
    /// 1 right, 2 middle).
    pub fn mouse_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        let m = &mut self.mouse;
        m.dx += dx;
        m.dy += dy;
        m.dz += dz;
        m.buttons = buttons;
        if m.enabled && !m.remote && m.queue.len() < 48 {
            m.push_packet();
            self.refill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_test_and_a20_through_output_port() {
        let mut k = I8042::new();
        k.io_write(0x64, 0xAA);
        assert_eq!(k.io_read(0x64) & STAT_OBF, STAT_OBF);
        assert_eq!(k.io_read(0x60), 0x55);
        assert_eq!(k.io_read(0x64) & STAT_OBF, 0);
        k.io_write(0x64, 0xD1);
        let ch = k.io_write(0x60, 0xDD & !2);
        assert_eq!(ch.a20, Some(false));
        let ch = k.io_write(0x64, 0xD1);
        assert_eq!(ch, OutputChange::default(), "the command itself changes nothing");
        let ch = k.io_write(0x60, 0xDF);
        assert_eq!(ch.a20, Some(true));
        assert!(k.io_write(0x64, 0xFE).reset);
    }

    #[test]
    fn keyboard_reset_and_translation() {
        let mut k = I8042::new();
        k.io_write(0x60, 0xFF);
        assert_eq!(k.io_read(0x60), 0xFA);
        assert_eq!(k.io_read(0x60), 0xAA);
        assert!(k.irqs().0 == false);
        k.key_event(&[0x1C]); // 'A' make in set 2
        assert!(k.irqs().0);
        assert_eq!(k.io_read(0x60), 0x1E, "set 1 make code of A");
        k.key_event(&[0xF0, 0x1C]);
        assert_eq!(k.io_read(0x60), 0x9E, "set 1 break code of A");
    }

    #[test]
    fn mouse_reset_and_stream() {
        let mut k = I8042::new();
        k.io_write(0x64, 0xD4);
        k.io_write(0x60, 0xFF);
        assert_eq!([k.io_read(0x60), k.io_read(0x60), k.io_read(0x60)], [0xFA, 0xAA, 0x00]);
        k.io_write(0x64, 0xD4);
        k.io_write(0x60, 0xF4);
        assert_eq!(k.io_read(0x60), 0xFA);
        k.mouse_event(5, -3, 0, 1);
        assert!(k.irqs().1);
        assert_eq!([k.io_read(0x60), k.io_read(0x60), k.io_read(0x60)], [0x29, 5, 0xFD]);
    }
}
