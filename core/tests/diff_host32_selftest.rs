mod common;
use common::host32::{Host32, Regs32};

#[test]
fn host32_runs_daa_on_silicon() {
    let mut h = Host32::new();
    // add eax, ebx
    let mut r = Regs32::default();
    r.gpr[0] = 0x8000_0001;
    r.gpr[3] = 0x8000_0002;
    let o = h.run(&[0x01, 0xd8], &r);
    assert_eq!(o.gpr[0], 3);
    assert_eq!(o.eflags & 0x8d5, 0x805, "CF OF PF: {:x}", o.eflags);
    // daa: 0x09 + 0x08 = 0x11 with AF -> 0x17
    let mut r = Regs32::default();
    r.gpr[0] = 0x11;
    r.eflags = 0x10; // AF
    let o = h.run(&[0x27], &r);
    assert_eq!(o.gpr[0] & 0xff, 0x17);
}
