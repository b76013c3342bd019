//! National Semiconductor 16550A UART (COM1 at 0x3F8, IRQ 4). Transmitted bytes go to a sink
//! (stdout, a file, a buffer); received bytes come from [`Serial::receive`].
//!
//! Transmission is instantaneous (no baud-rate timing): THR empties as soon as it is written,
//! which is what guests see on QEMU too.

use std::collections::VecDeque;
use std::io::Write;

use serde::{Deserialize, Serialize};

const IER_RDI: u8 = 0x01;
const IER_THRI: u8 = 0x02;
const IER_RLSI: u8 = 0x04;
const IER_MSI: u8 = 0x08;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

/// UART registers (the plain serde state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UartState {
    pub divisor: u16,
    pub ier: u8,
    pub fcr: u8,
    pub lcr: u8,
    pub mcr: u8,
    pub lsr: u8,
    pub msr: u8,
    pub scr: u8,
    pub rx: VecDeque<u8>,
    /// A THR-empty interrupt is pending (cleared by reading IIR or writing THR).
    pub thri_pending: bool,
}

impl Default for UartState {
    fn default() -> Self {
        UartState {
            divisor: 12,
            ier: 0,
            fcr: 0,
            lcr: 0x03,
            mcr: 0,
            lsr: LSR_THRE | LSR_TEMT,
            msr: 0xB0, // CTS, DSR, DCD
            scr: 0,
            rx: VecDeque::new(),
            thri_pending: false,
        }
    }
}

/// Where transmitted bytes go.
pub enum SerialSink {
    Null,
    Stdout,
    Writer(Box<dyn Write + Send>),
    /// Kept in memory (tests, front ends).
    Buffer(Vec<u8>),
}

impl SerialSink {
    pub fn write(&mut self, b: u8) {
        match self {
            SerialSink::Null => {}
            SerialSink::Stdout => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(&[b]);
                if b == b'\n' {
                    let _ = o.flush();
                }
            }
            SerialSink::Writer(w) => {
                let _ = w.write_all(&[b]);
            }
            SerialSink::Buffer(v) => v.push(b),
        }
    }

    pub fn flush(&mut self) {
        match self {
            SerialSink::Stdout => {
                let _ = std::io::stdout().flush();
            }
            SerialSink::Writer(w) => {
                let _ = w.flush();
            }
            _ => {}
        }
    }
}

pub struct Serial {
    pub state: UartState,
    pub sink: SerialSink,
}

impl Serial {
    pub fn new(sink: SerialSink) -> Self {
        Serial { state: UartState::default(), sink }
    }

    pub fn reset(&mut self) {
        self.state = UartState::default();
    }

    fn transmit(&mut self, b: u8) {
        self.sink.write(b);
    }

    pub fn flush(&mut self) {
        self.sink.flush()
    }

    /// Bytes received from the outside world (keyboard of a terminal, a socket).
    pub fn receive(&mut self, data: &[u8]) {
        let s = &mut self.state;
        for &b in data {
            if s.rx.len() >= 16 {
                s.lsr |= LSR_OE;
                break;
            }
            s.rx.push_back(b);
        }
        if !s.rx.is_empty() {
            s.lsr |= LSR_DR;
        }
    }

    /// Whether the guest can take more input now.
    pub fn rx_has_room(&self) -> bool {
        self.state.rx.len() < 16
    }

    fn iir(&self) -> u8 {
        let s = &self.state;
        let fifo = if s.fcr & 1 != 0 { 0xC0 } else { 0 };
        let id = if s.ier & IER_RLSI != 0 && s.lsr & LSR_OE != 0 {
            0x06
        } else if s.ier & IER_RDI != 0 && s.lsr & LSR_DR != 0 {
            0x04
        } else if s.ier & IER_THRI != 0 && s.thri_pending {
            0x02
        } else if s.ier & IER_MSI != 0 && s.msr & 0x0F != 0 {
            0x00
        } else {
            0x01
        };
        fifo | id
    }

    /// IRQ line level (OUT2 gates the interrupt onto the ISA bus, as on PCs).
    pub fn irq(&self) -> bool {
        self.iir() & 1 == 0 && self.state.mcr & MCR_OUT2 != 0
    }

    pub fn io_read(&mut self, off: u16) -> u8 {
        let dlab = self.state.lcr & 0x80 != 0;
        match off & 7 {
            0 if dlab => self.state.divisor as u8,
            0 => {
                let s = &mut self.state;
                let b = s.rx.pop_front().unwrap_or(0);
                if s.rx.is_empty() {
                    s.lsr &= !LSR_DR;
                }
                b
            }
            1 if dlab => (self.state.divisor >> 8) as u8,
            1 => self.state.ier,
            2 => {
                let v = self.iir();
                if v & 0x0F == 0x02 {
                    self.state.thri_pending = false;
                }
                v
            }
            3 => self.state.lcr,
            4 => self.state.mcr,
            5 => {
                let v = self.state.lsr;
                self.state.lsr &= !LSR_OE;
                v
            }
            6 => {
                let s = &mut self.state;
                if s.mcr & MCR_LOOP != 0 {
                    // loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD
                    let m = s.mcr;
                    ((m & 1) << 5) | ((m & 2) << 3) | ((m & 4) << 4) | ((m & 8) << 4)
                } else {
                    let v = s.msr;
                    s.msr &= 0xF0;
                    v
                }
            }
            _ => self.state.scr,
        }
    }

    pub fn io_write(&mut self, off: u16, v: u8) {
        let dlab = self.state.lcr & 0x80 != 0;
        match off & 7 {
            0 if dlab => self.state.divisor = (self.state.divisor & 0xFF00) | v as u16,
            0 => {
                if self.state.mcr & MCR_LOOP != 0 {
                    self.receive(&[v]);
                } else {
                    self.transmit(v);
                }
                self.state.thri_pending = true;
            }
            1 if dlab => self.state.divisor = (self.state.divisor & 0x00FF) | ((v as u16) << 8),
            1 => {
                let s = &mut self.state;
                let was = s.ier & IER_THRI != 0;
                s.ier = v & 0x0F;
                if !was && s.ier & IER_THRI != 0 {
                    s.thri_pending = true;
                }
            }
            2 => {
                let s = &mut self.state;
                if v & 0x02 != 0 {
                    s.rx.clear();
                    s.lsr &= !LSR_DR;
                }
                s.fcr = v & 0xC9;
            }
            3 => self.state.lcr = v,
            4 => self.state.mcr = v & 0x1F,
            5 => {}
            6 => {}
            _ => self.state.scr = v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seabios_detection_and_output() {
        let mut s = Serial::new(SerialSink::Buffer(Vec::new()));
        // SeaBIOS detect_serial()
        s.io_write(1, 0x02);
        assert_eq!(s.io_read(1), 0x02);
        assert_eq!(s.io_read(2) & 0x3F, 0x02);
        s.io_write(1, 0x00);
        for b in b"hi\n" {
            assert!(s.io_read(5) & LSR_THRE != 0);
            s.io_write(0, *b);
        }
        match &s.sink {
            SerialSink::Buffer(v) => assert_eq!(v, b"hi\n"),
            _ => unreachable!(),
        }
    }

    #[test]
    fn receive_interrupt_needs_out2() {
        let mut s = Serial::new(SerialSink::Null);
        s.io_write(1, IER_RDI);
        s.receive(b"x");
        assert!(!s.irq());
        s.io_write(4, MCR_OUT2);
        assert!(s.irq());
        assert_eq!(s.io_read(2) & 0x0F, 0x04);
        assert_eq!(s.io_read(0), b'x');
        assert!(!s.irq());
    }

    #[test]
    fn loopback() {
        let mut s = Serial::new(SerialSink::Null);
        s.io_write(4, MCR_LOOP | 0x0B);
        s.io_write(0, 0xAE);
        assert_eq!(s.io_read(5) & LSR_DR, LSR_DR);
        assert_eq!(s.io_read(0), 0xAE);
        assert_eq!(s.io_read(6) & 0xF0, 0xB0);
    }
}
