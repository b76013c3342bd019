//! Disassembly (iced-x86) and the instruction trace: with the `tracing` target
//! `vessel::cpu::trace` enabled at TRACE level, every instruction is logged with CS:EIP, its
//! disassembly and the registers. Whether it is on is checked once per `run`/`step`, so it costs
//! one predictable branch per instruction when off.

use super::state::*;
use super::Cpu;
use crate::bus::Bus;
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

impl Cpu {
    #[inline(never)]
    pub(crate) fn trace_insn<B: Bus>(&mut self, bus: &mut B) {
        let mut bytes = [0u8; 15];
        let save = self.ip;
        let mut n = 0;
        while n < 15 {
            match self.fetch8(bus) {
                Ok(b) => bytes[n] = b,
                Err(_) => break,
            }
            n += 1;
        }
        self.ip = save;
        let text = disassemble(&bytes[..n], self.s.seg[CS].big(), self.s.eip);
        let g = &self.s.gpr;
        tracing::trace!(
            target: "vessel::cpu::trace",
            "{:04x}:{:08x} {:<40} eax={:08x} ecx={:08x} edx={:08x} ebx={:08x} esp={:08x} ebp={:08x} esi={:08x} edi={:08x} fl={:08x}",
            self.s.seg[CS].selector, self.s.eip, text, g[EAX], g[ECX], g[EDX], g[EBX], g[ESP], g[EBP], g[ESI], g[EDI], self.eflags()
        );
    }
}

/// Disassemble the first instruction of `bytes` (16- or 32-bit code) in Intel syntax.
pub fn disassemble(bytes: &[u8], big: bool, ip: u32) -> String {
    let mut d = Decoder::with_ip(if big { 32 } else { 16 }, bytes, ip as u64, DecoderOptions::NONE);
    let insn = d.decode();
    let mut out = String::new();
    if insn.is_invalid() {
        out.push_str("(bad)");
    } else {
        IntelFormatter::new().format(&insn, &mut out);
    }
    out
}
