//! A CPU plus the `pc` board, and the loop that runs them together on the virtual clock.

use vessel_core::cpu::{Cpu, RunExit};

use super::{MachineExit, Pc};

/// Why [`Machine::run_slice`] stopped the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// ACPI soft-off.
    PowerOff,
    /// isa-debug-exit: the process exit status QEMU would use.
    DebugExit(u32),
    /// The guest reset the machine (or triple-faulted) and resets were not allowed.
    Reset,
    /// The CPU is halted with interrupts disabled and nothing can wake it.
    Hung,
}

/// What one slice did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slice {
    /// Instructions ran.
    Ran,
    /// The CPU is halted and no device event is scheduled: only outside input can wake it.
    Idle,
    Stopped(Stop),
}

pub struct Machine {
    pub cpu: Cpu,
    pub pc: Pc,
    /// Stop instead of resetting when the guest resets (QEMU's `-no-reboot`).
    pub no_reboot: bool,
    pub resets: u32,
}

impl Machine {
    pub fn new(pc: Pc) -> Self {
        Machine { cpu: Cpu::new(), pc, no_reboot: false, resets: 0 }
    }

    fn reset(&mut self) -> Option<Stop> {
        if self.no_reboot {
            return Some(Stop::Reset);
        }
        self.resets += 1;
        self.pc.reset();
        self.cpu.reset();
        None
    }

    /// Run the CPU up to the next device deadline (at most `clock::MAX_SLICE_NS` of virtual time),
    /// then bring the devices up to date.
    pub fn run_slice(&mut self) -> Slice {
        let budget = self.pc.slice_budget();
        let before = self.cpu.instructions_retired();
        let exit = self.cpu.run(&mut self.pc, budget);
        let ran = self.cpu.instructions_retired() - before;
        self.pc.advance(ran);
        if let Some(e) = self.pc.exit.take() {
            match e {
                MachineExit::PowerOff => return Slice::Stopped(Stop::PowerOff),
                MachineExit::DebugExit(code) => return Slice::Stopped(Stop::DebugExit(code)),
                MachineExit::Reset => {
                    if let Some(s) = self.reset() {
                        return Slice::Stopped(s);
                    }
                    return Slice::Ran;
                }
            }
        }
        match exit {
            RunExit::Shutdown => {
                tracing::warn!("triple fault: resetting");
                if let Some(s) = self.reset() {
                    return Slice::Stopped(s);
                }
                Slice::Ran
            }
            RunExit::Halted => {
                if self.pc.pic.intr() {
                    return Slice::Ran;
                }
                let if_set = self.cpu.state().eflags & 0x200 != 0;
                if !if_set {
                    return Slice::Stopped(Stop::Hung);
                }
                if self.pc.idle() { Slice::Ran } else { Slice::Idle }
            }
            _ => Slice::Ran,
        }
    }
}
