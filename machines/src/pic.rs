//! Intel 8259A programmable interrupt controller pair (master 0x20/0x21, slave 0xA0/0xA1, cascade
//! on master IRQ2) with the PIIX edge/level control registers (ELCR, 0x4D0/0x4D1).
//!
//! Inputs are levels (`set_irq`); in edge mode a rising edge latches IRR, in level mode (ELCR bit
//! set) IRR follows the line.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chip {
    pub last_irr: u8,
    pub irr: u8,
    pub imr: u8,
    pub isr: u8,
    pub priority_add: u8,
    pub irq_base: u8,
    pub read_reg_select: bool,
    pub poll: bool,
    pub special_mask: bool,
    pub init_state: u8,
    pub auto_eoi: bool,
    pub rotate_on_auto_eoi: bool,
    pub special_fully_nested: bool,
    pub init4: bool,
    pub single_mode: bool,
    pub elcr: u8,
    pub elcr_mask: u8,
    /// Current level of each input line (for level-triggered inputs and edge detection).
    pub lines: u8,
}

impl Chip {
    fn new(elcr_mask: u8) -> Self {
        Chip { elcr_mask, ..Default::default() }
    }

    fn reset(&mut self) {
        let (elcr, elcr_mask, lines) = (self.elcr, self.elcr_mask, self.lines);
        *self = Chip { elcr, elcr_mask, lines, ..Default::default() };
        self.last_irr = 0;
    }

    fn set_irq(&mut self, irq: u8, level: bool) {
        let mask = 1u8 << irq;
        if level { self.lines |= mask } else { self.lines &= !mask }
        if self.elcr & mask != 0 {
            // level triggered
            if level {
                self.irr |= mask;
                self.last_irr |= mask;
            } else {
                self.irr &= !mask;
                self.last_irr &= !mask;
            }
        } else if level {
            if self.last_irr & mask == 0 {
                self.irr |= mask;
            }
            self.last_irr |= mask;
        } else {
            self.last_irr &= !mask;
        }
    }

    /// Highest priority bit in `mask`, as a priority index 0..7 (0 = highest), or 8.
    fn priority(&self, mask: u8) -> u8 {
        if mask == 0 {
            return 8;
        }
        let mut p = 0;
        while mask & (1 << ((p + self.priority_add) & 7)) == 0 {
            p += 1;
        }
        p
    }

    /// IRQ number (0..7) the chip wants to deliver, if any.
    fn get_irq(&self, is_master: bool) -> Option<u8> {
        let pending = self.irr & !self.imr;
        let p = self.priority(pending);
        if p == 8 {
            return None;
        }
        let mut isr = self.isr;
        if self.special_mask {
            isr &= !self.imr;
        }
        if self.special_fully_nested && is_master {
            isr &= !(1 << 2);
        }
        let cur = self.priority(isr);
        (p < cur).then_some((p + self.priority_add) & 7)
    }

    fn eoi(&mut self, irq: u8) {
        self.isr &= !(1 << irq);
    }

    /// Acknowledge `irq`: set ISR (unless AEOI), clear IRR for edge-triggered inputs.
    fn intack(&mut self, irq: u8) {
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_add = (irq + 1) & 7;
            }
        } else {
            self.isr |= 1 << irq;
        }
        if self.elcr & (1 << irq) == 0 {
            self.irr &= !(1 << irq);
        }
    }

    fn write(&mut self, a0: bool, v: u8) {
        if !a0 {
            if v & 0x10 != 0 {
                // ICW1
                self.reset();
                self.init_state = 1;
                self.init4 = v & 1 != 0;
                self.single_mode = v & 2 != 0;
            } else if v & 0x08 != 0 {
                // OCW3
                if v & 0x04 != 0 {
                    self.poll = true;
                }
                if v & 0x02 != 0 {
                    self.read_reg_select = v & 1 != 0;
                }
                if v & 0x40 != 0 {
                    self.special_mask = v & 0x20 != 0;
                }
            } else {
                // OCW2
                let cmd = v >> 5;
                match cmd {
                    0 | 4 => self.rotate_on_auto_eoi = cmd >> 2 != 0,
                    1 | 5 => {
                        // non-specific EOI (5: with rotation)
                        let p = self.priority(self.isr);
                        if p != 8 {
                            let irq = (p + self.priority_add) & 7;
                            self.isr &= !(1 << irq);
                            if cmd == 5 {
                                self.priority_add = (irq + 1) & 7;
                            }
                        }
                    }
                    3 => self.eoi(v & 7),
                    6 => self.priority_add = (v + 1) & 7,
                    7 => {
                        let irq = v & 7;
                        self.isr &= !(1 << irq);
                        self.priority_add = (irq + 1) & 7;
                    }
                    _ => {}
                }
            }
        } else {
            match self.init_state {
                0 => self.imr = v,
                1 => {
                    self.irq_base = v & 0xF8;
                    self.init_state = if self.single_mode { if self.init4 { 3 } else { 0 } } else { 2 };
                }
                2 => self.init_state = if self.init4 { 3 } else { 0 },
                _ => {
                    self.special_fully_nested = v & 0x10 != 0;
                    self.auto_eoi = v & 0x02 != 0;
                    self.init_state = 0;
                }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pic {
    pub chips: [Chip; 2],
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    pub fn new() -> Self {
        // IRQ 0, 1, 2, 8, 13 can't be level triggered on the PIIX.
        Pic { chips: [Chip::new(0xF8), Chip::new(0xDE)] }
    }

    pub fn reset(&mut self) {
        for c in &mut self.chips {
            c.reset();
            c.elcr = 0;
        }
    }

    /// Set the level of ISA IRQ line `irq` (0..15).
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        self.chips[(irq >> 3) as usize].set_irq(irq & 7, level);
        self.update_cascade();
    }

    fn update_cascade(&mut self) {
        let slave = self.chips[1].get_irq(false).is_some();
        self.chips[0].set_irq(2, slave);
    }

    /// Level of the INTR pin.
    pub fn intr(&self) -> bool {
        self.chips[0].get_irq(true).is_some()
    }

    /// Interrupt acknowledge: returns the vector (spurious IRQ 7/15 if nothing is pending).
    pub fn ack(&mut self) -> u8 {
        let v = match self.chips[0].get_irq(true) {
            Some(irq) => {
                self.chips[0].intack(irq);
                if irq == 2 {
                    let v = match self.chips[1].get_irq(false) {
                        Some(irq2) => {
                            self.chips[1].intack(irq2);
                            self.chips[1].irq_base + irq2
                        }
                        None => self.chips[1].irq_base + 7,
                    };
                    v
                } else {
                    self.chips[0].irq_base + irq
                }
            }
            None => self.chips[0].irq_base + 7,
        };
        self.update_cascade();
        v
    }

    /// Poll-mode read: acknowledge and return 0x80 | irq, or 0.
    fn poll_read(&mut self, n: usize) -> u8 {
        let r = match self.chips[n].get_irq(n == 0) {
            Some(irq) => {
                if n == 1 {
                    self.chips[0].isr &= !(1 << 2);
                    self.chips[0].irr &= !(1 << 2);
                }
                self.chips[n].irr &= !(1 << irq);
                self.chips[n].isr &= !(1 << irq);
                0x80 | irq
            }
            None => 0,
        };
        self.update_cascade();
        r
    }

    pub fn io_read(&mut self, port: u16) -> u8 {
        match port {
            0x20 | 0x21 | 0xA0 | 0xA1 => {
                let n = (port >> 7) as usize & 1;
                if self.chips[n].poll {
                    self.chips[n].poll = false;
                    return self.poll_read(n);
                }
                let c = &self.chips[n];
                if port & 1 != 0 {
                    c.imr
                } else if c.read_reg_select {
                    c.isr
                } else {
                    c.irr
                }
            }
            0x4D0 => self.chips[0].elcr,
            0x4D1 => self.chips[1].elcr,
            _ => 0xFF,
        }
    }

    pub fn io_write(&mut self, port: u16, v: u8) {
        match port {
            0x20 | 0x21 | 0xA0 | 0xA1 => {
                let n = (port >> 7) as usize & 1;
                self.chips[n].write(port & 1 != 0, v);
                // lines that are still asserted stay visible to level-triggered inputs
                if n == 1 || v & 0x10 == 0 {
                    self.update_cascade();
                }
            }
            0x4D0 | 0x4D1 => {
                let c = &mut self.chips[(port & 1) as usize];
                c.elcr = v & c.elcr_mask;
                let lines = c.lines;
                for i in 0..8 {
                    if c.elcr & (1 << i) != 0 {
                        c.set_irq(i, lines & (1 << i) != 0);
                    }
                }
                self.update_cascade();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(p: &mut Pic) {
        // the BIOS sequence: ICW1..ICW4 on both chips, vectors 0x08 / 0x70
        for (base, vec, icw3) in [(0x20u16, 0x08u8, 0x04u8), (0xA0, 0x70, 0x02)] {
            p.io_write(base, 0x11);
            p.io_write(base + 1, vec);
            p.io_write(base + 1, icw3);
            p.io_write(base + 1, 0x01);
            p.io_write(base + 1, 0x00);
        }
    }

    #[test]
    fn timer_edge_delivers_vector_and_needs_eoi() {
        let mut p = Pic::new();
        init(&mut p);
        assert!(!p.intr());
        p.set_irq(0, true);
        assert!(p.intr());
        assert_eq!(p.ack(), 0x08);
        assert!(!p.intr());
        p.set_irq(0, false);
        p.set_irq(0, true);
        assert!(!p.intr(), "IRQ0 in service blocks another IRQ0");
        p.io_write(0x20, 0x20); // EOI
        assert!(p.intr());
    }

    #[test]
    fn slave_irq_cascades_and_priority_orders() {
        let mut p = Pic::new();
        init(&mut p);
        p.set_irq(14, true);
        p.set_irq(3, true);
        // IRQ2 (cascade) has priority over IRQ3
        assert_eq!(p.ack(), 0x76);
        assert!(!p.intr(), "IRQ3 is lower priority than in-service IRQ2");
        p.io_write(0xA0, 0x20);
        p.io_write(0x20, 0x20);
        assert_eq!(p.ack(), 0x0B);
        // masked line does not interrupt
        p.io_write(0x21, 0xFF);
        p.set_irq(1, true);
        assert!(!p.intr());
        // IRR readable through OCW3
        p.io_write(0x20, 0x0A);
        assert_eq!(p.io_read(0x20) & 0x02, 0x02);
    }

    #[test]
    fn level_triggered_via_elcr_follows_line() {
        let mut p = Pic::new();
        init(&mut p);
        p.io_write(0x4D1, 0x0C); // IRQ 10, 11 level
        assert_eq!(p.io_read(0x4D1), 0x0C);
        p.set_irq(11, true);
        assert_eq!(p.ack(), 0x73);
        p.io_write(0xA0, 0x20);
        p.io_write(0x20, 0x20);
        assert!(p.intr(), "still asserted: level-triggered IRQ re-requests");
        p.set_irq(11, false);
        p.io_write(0xA0, 0x0A);
        assert_eq!(p.io_read(0xA0) & 0x08, 0, "slave IRR follows the level line");
        // the master latched the cascade edge: acknowledging now yields the spurious IRQ 15
        assert_eq!(p.ack(), 0x77);
    }
}
