//! FPU environment and state images: FNSTENV/FLDENV, FNSAVE/FRSTOR (14/28-byte environment in
//! the real-mode and protected-mode layouts) and FXSAVE/FXRSTOR (512 bytes).
//!
//! Reserved halves of the 32-bit layouts are written as 0xFFFF, as Intel P6-class parts do. In
//! real/v86 mode the instruction and operand pointers are stored as 20-bit linear addresses
//! (segment * 16 + offset), the format real-mode software expects.

use super::float::F80;
use super::{FpuContext, FpuMemory, FpuState, MemFault};

fn env_bytes(s: &FpuState, ctx: &FpuContext) -> ([u8; 28], usize) {
    let mut b = [0u8; 28];
    let cw = s.cw;
    let sw = s.status_word();
    let tw = s.tag_word();
    let fop = (s.fop & 0x7FF) as u32;
    if ctx.op32 {
        let mut put = |o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_le_bytes());
        put(0, 0xFFFF_0000 | cw as u32);
        put(4, 0xFFFF_0000 | sw as u32);
        put(8, 0xFFFF_0000 | tw as u32);
        if ctx.protected {
            put(12, s.fip);
            put(16, s.fcs as u32 | (fop << 16));
            put(20, s.fdp);
            put(24, 0xFFFF_0000 | s.fds as u32);
        } else {
            let ip = (s.fcs as u32) * 16 + s.fip;
            let dp = (s.fds as u32) * 16 + s.fdp;
            put(12, 0xFFFF_0000 | (ip & 0xFFFF));
            put(16, ((ip >> 16) << 12) | fop);
            put(20, 0xFFFF_0000 | (dp & 0xFFFF));
            put(24, (dp >> 16) << 12);
        }
        (b, 28)
    } else {
        let mut put = |o: usize, v: u16| b[o..o + 2].copy_from_slice(&v.to_le_bytes());
        put(0, cw);
        put(2, sw);
        put(4, tw);
        if ctx.protected {
            put(6, s.fip as u16);
            put(8, s.fcs);
            put(10, s.fdp as u16);
            put(12, s.fds);
        } else {
            let ip = (s.fcs as u32) * 16 + s.fip;
            let dp = (s.fds as u32) * 16 + s.fdp;
            put(6, ip as u16);
            put(8, (((ip >> 16) & 0xF) << 12) as u16 | fop as u16);
            put(10, dp as u16);
            put(12, (((dp >> 16) & 0xF) << 12) as u16);
        }
        (b, 14)
    }
}

fn load_env(s: &mut FpuState, b: &[u8], ctx: &FpuContext) {
    let g32 = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let g16 = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let (cw, sw, tw);
    if ctx.op32 {
        cw = g32(0) as u16;
        sw = g32(4) as u16;
        tw = g32(8) as u16;
        if ctx.protected {
            s.fip = g32(12);
            s.fcs = g32(16) as u16;
            s.fop = ((g32(16) >> 16) & 0x7FF) as u16;
            s.fdp = g32(20);
            s.fds = g32(24) as u16;
        } else {
            s.fip = (g32(12) & 0xFFFF) | (((g32(16) >> 12) & 0xFFFF) << 16);
            s.fop = (g32(16) & 0x7FF) as u16;
            s.fcs = 0;
            s.fdp = (g32(20) & 0xFFFF) | (((g32(24) >> 12) & 0xFFFF) << 16);
            s.fds = 0;
        }
    } else {
        cw = g16(0);
        sw = g16(2);
        tw = g16(4);
        if ctx.protected {
            s.fip = g16(6) as u32;
            s.fcs = g16(8);
            s.fdp = g16(10) as u32;
            s.fds = g16(12);
        } else {
            s.fip = g16(6) as u32 | (((g16(8) >> 12) as u32) << 16);
            s.fop = g16(8) & 0x7FF;
            s.fcs = 0;
            s.fdp = g16(10) as u32 | (((g16(12) >> 12) as u32) << 16);
            s.fds = 0;
        }
    }
    s.cw = (cw & 0x1F3F) | 0x40;
    s.set_tag_word(tw);
    s.set_status_word(sw);
}

pub fn fnstenv<M: FpuMemory>(s: &FpuState, ea: u32, mem: &mut M, ctx: &FpuContext) -> Result<(), MemFault> {
    let (b, n) = env_bytes(s, ctx);
    mem.write(ea, &b[..n])
}

pub fn fldenv<M: FpuMemory>(s: &mut FpuState, ea: u32, mem: &mut M, ctx: &FpuContext) -> Result<(), MemFault> {
    let n = if ctx.op32 { 28 } else { 14 };
    let mut b = [0u8; 28];
    mem.read(ea, &mut b[..n])?;
    load_env(s, &b[..n], ctx);
    Ok(())
}

pub fn fnsave<M: FpuMemory>(s: &FpuState, ea: u32, mem: &mut M, ctx: &FpuContext) -> Result<(), MemFault> {
    let (e, n) = env_bytes(s, ctx);
    let mut b = [0u8; 108];
    b[..n].copy_from_slice(&e[..n]);
    for i in 0..8 {
        b[n + 10 * i..n + 10 * i + 10].copy_from_slice(&s.st(i as u8).to_bytes());
    }
    mem.write(ea, &b[..n + 80])
}

pub fn frstor<M: FpuMemory>(s: &mut FpuState, ea: u32, mem: &mut M, ctx: &FpuContext) -> Result<(), MemFault> {
    let n = if ctx.op32 { 28 } else { 14 };
    let mut b = [0u8; 108];
    mem.read(ea, &mut b[..n + 80])?;
    load_env(s, &b[..n], ctx);
    for i in 0..8 {
        let p = ((s.top as usize) + i) & 7;
        s.regs[p] = F80::from_bytes(&b[n + 10 * i..n + 10 * i + 10]);
    }
    Ok(())
}

pub fn fxsave<M: FpuMemory>(s: &FpuState, ea: u32, mem: &mut M) -> Result<(), MemFault> {
    let mut b = [0u8; 512];
    // Only the architecturally defined part is written; bytes 160-511 (XMM, reserved) are left
    // untouched in memory, as on a CPU without SSE.
    b[0..2].copy_from_slice(&s.cw.to_le_bytes());
    b[2..4].copy_from_slice(&s.status_word().to_le_bytes());
    b[4] = s.tags;
    b[6..8].copy_from_slice(&(s.fop & 0x7FF).to_le_bytes());
    b[8..12].copy_from_slice(&s.fip.to_le_bytes());
    b[12..14].copy_from_slice(&s.fcs.to_le_bytes());
    b[16..20].copy_from_slice(&s.fdp.to_le_bytes());
    b[20..22].copy_from_slice(&s.fds.to_le_bytes());
    for i in 0..8 {
        b[32 + 16 * i..42 + 16 * i].copy_from_slice(&s.st(i as u8).to_bytes());
    }
    mem.write(ea, &b[..160])
}

pub fn fxrstor<M: FpuMemory>(s: &mut FpuState, ea: u32, mem: &mut M) -> Result<(), MemFault> {
    let mut b = [0u8; 160];
    mem.read(ea, &mut b)?;
    let g16 = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    s.cw = (g16(0) & 0x1F3F) | 0x40;
    s.set_status_word(g16(2));
    s.tags = b[4];
    s.fop = g16(6) & 0x7FF;
    s.fip = u32::from_le_bytes(b[8..12].try_into().unwrap());
    s.fcs = g16(12);
    s.fdp = u32::from_le_bytes(b[16..20].try_into().unwrap());
    s.fds = g16(20);
    for i in 0..8 {
        let p = ((s.top as usize) + i) & 7;
        s.regs[p] = F80::from_bytes(&b[32 + 16 * i..42 + 16 * i]);
    }
    Ok(())
}
