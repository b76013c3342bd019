//! The `pc` machine behind the engine API (`vessel_core::vm`): slices, input, serial, media and
//! machine state save/restore.
//!
//! Saved state (`savevm`/`loadvm`): a small header, the CPU and board device states as RON (the
//! plain serde structs the devices already keep), then guest RAM as raw bytes. Pluggable devices
//! (VGA, IDE, floppy) take part through [`IoDevice::save_state`]; a device that cannot save makes
//! saving fail with its name rather than produce a state that would not resume. Disk *contents*
//! are not part of the file: restoring is only consistent while the disks are unchanged (or are
//! rolled back together, e.g. with a qcow2 internal snapshot of the same name).

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use vessel_core::cpu::CpuState;
use vessel_core::display::Frame;
use vessel_core::vm::{self, BlockInfo, InputEvent, Slice, StopReason, VmError};

use super::machine::{Machine, Slice as PcSlice, Stop};
use super::{Clock, Ext};
use crate::dma::Dma;
use crate::fw_cfg::FwCfg;
use crate::i8042::I8042;
use crate::pci::host::I440fx;
use crate::pci::piix3::Piix3;
use crate::pci::piix4_pm::Piix4Pm;
use crate::pci::PciConfig;
use crate::pic::Pic;
use crate::pit::Pit;
use crate::rtc::Rtc;
use crate::serial::{SerialSink, UartState};

const MAGIC: &[u8; 8] = b"VESSELst";
const VERSION: u32 = 1;

/// Pluggable device state in a saved machine.
#[derive(Serialize, Deserialize)]
struct ExtState {
    name: String,
    pci_config: Option<PciConfig>,
    state: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct PcState {
    cpu: CpuState,
    ram_size: u64,
    clock: Clock,
    host: I440fx,
    piix3: Piix3,
    pm: Piix4Pm,
    pic: Pic,
    pit: Pit,
    rtc: Rtc,
    kbc: I8042,
    dma: Dma,
    serial: UartState,
    fw_cfg: FwCfg,
    post_code: u8,
    port92: u8,
    apm: [u8; 2],
    cf8: u32,
    a20: bool,
    last_poll_ns: u64,
    resets: u32,
    ext: Vec<ExtState>,
}

fn io_err(e: std::io::Error) -> VmError {
    VmError::State(e.to_string())
}

/// PC scancode set 1 make code -> set 2 code, by inverting the i8042's translation table.
fn set1_to_set2(code: u8) -> Option<u8> {
    // search downwards: set 1 0x41 (F7) is set 2 0x83; set 2 0x02 is an unused alias
    (0..0x84u8).rev().find(|&b| crate::i8042::set2_to_set1(b) == code)
}

/// Keys a real keyboard sends as more than a prefixed make/break code, in set 2.
fn special_key_set2(code: u16, pressed: bool) -> Option<&'static [u8]> {
    match (code, pressed) {
        // Pause: one sequence on press, nothing on release
        (vm::PAUSE, true) => Some(&[0xE1, 0x14, 0x77, 0xE1, 0xF0, 0x14, 0xF0, 0x77]),
        (vm::PAUSE, false) => Some(&[]),
        // Print Screen with its fake left shift
        (vm::PRINT_SCREEN, true) => Some(&[0xE0, 0x12, 0xE0, 0x7C]),
        (vm::PRINT_SCREEN, false) => Some(&[0xE0, 0xF0, 0x7C, 0xE0, 0xF0, 0x12]),
        _ => None,
    }
}

impl Machine {
    fn save(&mut self, out: &mut dyn Write) -> Result<(), VmError> {
        let pc = &mut self.pc;
        let mut ext = Vec::new();
        for e in &pc.ext {
            let (name, cfg, st) = match e {
                Ext::Pci { dev, .. } => (dev.name(), Some(dev.config().clone()), dev.save_state()),
                Ext::Isa(d) => (d.name(), None, d.save_state()),
            };
            let Some(state) = st else {
                return Err(VmError::State(format!("device {name} cannot save its state yet")));
            };
            ext.push(ExtState { name: name.to_string(), pci_config: cfg, state });
        }
        let st = PcState {
            cpu: self.cpu.state(),
            ram_size: pc.ram.len() as u64,
            clock: pc.clock.clone(),
            host: pc.host.clone(),
            piix3: pc.piix3.clone(),
            pm: pc.pm.clone(),
            pic: pc.pic.clone(),
            pit: pc.pit.clone(),
            rtc: pc.rtc.clone(),
            kbc: pc.kbc.clone(),
            dma: pc.dma.clone(),
            serial: pc.serial.state.clone(),
            fw_cfg: pc.fw_cfg.clone(),
            post_code: pc.post_code,
            port92: pc.port92,
            apm: pc.apm,
            cf8: pc.cf8,
            a20: pc.a20,
            last_poll_ns: pc.last_poll_ns,
            resets: self.resets,
            ext,
        };
        let text = ron::to_string(&st).map_err(|e| VmError::State(e.to_string()))?;
        out.write_all(MAGIC).map_err(io_err)?;
        out.write_all(&VERSION.to_le_bytes()).map_err(io_err)?;
        out.write_all(&(text.len() as u64).to_le_bytes()).map_err(io_err)?;
        out.write_all(text.as_bytes()).map_err(io_err)?;
        out.write_all(&(pc.ram.len() as u64).to_le_bytes()).map_err(io_err)?;
        out.write_all(&pc.ram).map_err(io_err)?;
        Ok(())
    }

    fn restore(&mut self, input: &mut dyn Read) -> Result<(), VmError> {
        let mut head = [0u8; 20];
        input.read_exact(&mut head).map_err(io_err)?;
        if &head[..8] != MAGIC {
            return Err(VmError::State("not a Vessel machine state file".into()));
        }
        let version = u32::from_le_bytes(head[8..12].try_into().unwrap());
        if version != VERSION {
            return Err(VmError::State(format!("state format version {version}, this build reads {VERSION}")));
        }
        let len = u64::from_le_bytes(head[12..20].try_into().unwrap());
        let mut text = vec![0u8; len as usize];
        input.read_exact(&mut text).map_err(io_err)?;
        let text = String::from_utf8(text).map_err(|e| VmError::State(e.to_string()))?;
        let st: PcState = ron::from_str(&text).map_err(|e| VmError::State(e.to_string()))?;
        let pc = &mut self.pc;
        if st.ram_size != pc.ram.len() as u64 {
            return Err(VmError::State(format!(
                "state has {} MiB of RAM, this machine {} MiB",
                st.ram_size >> 20,
                pc.ram.len() >> 20
            )));
        }
        if st.ext.len() != pc.ext.len() {
            return Err(VmError::State(format!(
                "state has {} pluggable devices, this machine {}",
                st.ext.len(),
                pc.ext.len()
            )));
        }
        for (e, s) in pc.ext.iter().zip(&st.ext) {
            let name = match e {
                Ext::Pci { dev, .. } => dev.name(),
                Ext::Isa(d) => d.name(),
            };
            if name != s.name {
                return Err(VmError::State(format!("state has device {} where this machine has {name}", s.name)));
            }
        }
        let mut lenb = [0u8; 8];
        input.read_exact(&mut lenb).map_err(io_err)?;
        if u64::from_le_bytes(lenb) != st.ram_size {
            return Err(VmError::State("RAM image size does not match the header".into()));
        }
        // Everything checked that can be checked up front; from here on the machine changes.
        input.read_exact(&mut pc.ram).map_err(io_err)?;
        for (e, s) in pc.ext.iter_mut().zip(st.ext) {
            match e {
                Ext::Pci { dev, .. } => {
                    if let Some(c) = s.pci_config {
                        *dev.config_mut() = c;
                    }
                    dev.restore_state(&s.state).map_err(VmError::State)?;
                }
                Ext::Isa(d) => d.restore_state(&s.state).map_err(VmError::State)?,
            }
        }
        pc.clock = st.clock;
        pc.host = st.host;
        pc.piix3 = st.piix3;
        pc.pm = st.pm;
        pc.pic = st.pic;
        pc.pit = st.pit;
        pc.rtc = st.rtc;
        pc.kbc = st.kbc;
        pc.dma = st.dma;
        pc.serial.state = st.serial;
        pc.fw_cfg = st.fw_cfg;
        pc.post_code = st.post_code;
        pc.port92 = st.port92;
        pc.apm = st.apm;
        pc.cf8 = st.cf8;
        pc.a20 = st.a20;
        pc.last_poll_ns = st.last_poll_ns;
        pc.exit = None;
        pc.rebuild_maps();
        pc.rebuild_low_kinds();
        pc.generation += 1;
        pc.update_ext_irqs();
        self.resets = st.resets;
        self.cpu.set_state(&st.cpu);
        Ok(())
    }
}

/// Engine hooks that pluggable devices answer through [`IoDevice`]'s optional methods.
impl super::Pc {
    /// The first display device's refreshed frame.
    pub fn refresh_display(&mut self) -> Option<&mut Frame> {
        self.ext.iter_mut().find_map(|e| e.io().display())
    }

    pub fn block_info(&self) -> Vec<BlockInfo> {
        let mut v = Vec::new();
        for e in &self.ext {
            match e {
                Ext::Pci { dev, .. } => v.extend(dev.drives()),
                Ext::Isa(d) => v.extend(d.drives()),
            }
        }
        v
    }

    pub fn disks(&self) -> Vec<vm::VmDisk> {
        let mut v = Vec::new();
        for e in &self.ext {
            match e {
                Ext::Pci { dev, .. } => v.extend(dev.disks()),
                Ext::Isa(d) => v.extend(d.disks()),
            }
        }
        v
    }

    pub fn change_media(&mut self, device: &str, path: Option<&std::path::Path>) -> Result<(), VmError> {
        for e in &mut self.ext {
            if let Some(r) = e.io().change_media(device, path) {
                return r;
            }
        }
        Err(VmError::NoDevice(device.to_string()))
    }
}

impl vm::Machine for Machine {
    fn run_slice(&mut self) -> Slice {
        let resets = self.resets;
        match Machine::run_slice(self) {
            PcSlice::Ran if self.resets != resets => Slice::Reset,
            PcSlice::Ran => Slice::Ran,
            PcSlice::Idle => Slice::Idle,
            PcSlice::Stopped(s) => Slice::Stopped(match s {
                Stop::PowerOff => StopReason::PowerOff,
                Stop::DebugExit(c) => StopReason::DebugExit(c),
                Stop::Reset => StopReason::Reset,
                Stop::Hung => {
                    let s = self.cpu.state();
                    StopReason::Hung(format!(
                        "CPU halted with interrupts disabled at {:04x}:{:08x}",
                        s.seg[1].selector, s.eip
                    ))
                }
            }),
        }
    }

    fn reset(&mut self) {
        self.resets += 1;
        self.pc.reset();
        self.cpu.reset();
    }

    fn virtual_ns(&self) -> u64 {
        self.pc.clock.now_ns()
    }

    fn instructions(&self) -> u64 {
        self.pc.clock.instructions
    }

    fn serial_input(&mut self, data: &[u8]) -> usize {
        let mut n = 0;
        while n < data.len() && self.pc.serial.rx_has_room() {
            n += 1;
        }
        if n > 0 {
            self.pc.serial_receive(&data[..n]);
        }
        n
    }

    fn take_serial_output(&mut self, out: &mut Vec<u8>) {
        if let SerialSink::Buffer(b) = &mut self.pc.serial.sink {
            out.append(b);
        }
    }

    fn input(&mut self, ev: &InputEvent) {
        match *ev {
            InputEvent::Key { code, pressed } => {
                if let Some(seq) = special_key_set2(code, pressed) {
                    if !seq.is_empty() {
                        self.pc.key_event(seq);
                    }
                    return;
                }
                let ext = code >> 8 == 0xE0;
                let Some(c2) = set1_to_set2(code as u8 & 0x7F) else {
                    tracing::debug!(code, "key without a set 2 code");
                    return;
                };
                let mut seq = [0u8; 3];
                let mut n = 0;
                if ext {
                    seq[n] = 0xE0;
                    n += 1;
                }
                if !pressed {
                    seq[n] = 0xF0;
                    n += 1;
                }
                seq[n] = c2;
                n += 1;
                self.pc.key_event(&seq[..n]);
            }
            InputEvent::Mouse { dx, dy, wheel, buttons } => {
                // PS/2 counts y upwards
                self.pc.mouse_event(dx, -dy, wheel, buttons);
            }
        }
    }

    fn refresh_display(&mut self) -> Option<&mut Frame> {
        self.pc.refresh_display()
    }

    fn block_info(&self) -> Vec<BlockInfo> {
        self.pc.block_info()
    }

    fn change_media(&mut self, device: &str, path: Option<&std::path::Path>) -> Result<(), VmError> {
        self.pc.change_media(device, path)
    }

    fn save_state(&mut self, out: &mut dyn Write) -> Result<(), VmError> {
        self.save(out)
    }

    fn restore_state(&mut self, input: &mut dyn Read) -> Result<(), VmError> {
        self.restore(input)
    }

    fn flush(&mut self) {
        self.pc.flush();
    }

    fn flush_output(&mut self) {
        self.pc.flush_output();
    }

    fn power_button(&mut self) -> Result<(), VmError> {
        self.pc.pm.press_power_button();
        self.pc.update_ext_irqs();
        Ok(())
    }

    fn cpu_state(&self) -> Option<CpuState> {
        Some(self.cpu.state())
    }

    fn disks(&self) -> Vec<vm::VmDisk> {
        self.pc.disks()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i8042::set2_to_set1;

    /// What a guest reading port 0x60 with translation on (the PC default) sees.
    fn translated(set2: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut brk = false;
        for &b in set2 {
            if b == 0xF0 {
                brk = true;
                continue;
            }
            out.push(set2_to_set1(b) | if std::mem::take(&mut brk) { 0x80 } else { 0 });
        }
        out
    }

    #[test]
    fn pause_and_print_screen_are_the_real_sequences() {
        assert_eq!(translated(special_key_set2(vm::PAUSE, true).unwrap()), [0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5]);
        assert_eq!(special_key_set2(vm::PAUSE, false), Some(&[][..]));
        assert_eq!(translated(special_key_set2(vm::PRINT_SCREEN, true).unwrap()), [0xE0, 0x2A, 0xE0, 0x37]);
        assert_eq!(translated(special_key_set2(vm::PRINT_SCREEN, false).unwrap()), [0xE0, 0xB7, 0xE0, 0xAA]);
    }

    /// Every set 1 make code a front end sends survives the trip to set 2 and back.
    #[test]
    fn set1_codes_round_trip_through_set2() {
        for c in (0x01..=0x58u8).chain([0x59, 0x70, 0x73, 0x79, 0x7B, 0x7D, 0x7E]) {
            let s2 = set1_to_set2(c).unwrap_or_else(|| panic!("{c:#x} has no set 2 code"));
            assert_eq!(set2_to_set1(s2), c);
        }
    }
}
