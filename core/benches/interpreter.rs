//! Interpreter throughput in guest instructions per second: a compute loop (integer ALU, loads and
//! stores, a data-dependent branch, loop branch) in 32-bit protected mode with flat segments on
//! `FlatBus`. This is the baseline the JIT will be measured against.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vessel_core::bus::FlatBus;
use vessel_core::cpu::{Cpu, Segment};

const CODE_AT: usize = 0x10_0000;

/// 32-bit code: the loop body is 11 instructions.
fn program() -> Vec<u8> {
    let mut c = vec![
        0xb9, 0xff, 0xff, 0xff, 0x7f, // mov ecx, 0x7fffffff
        0xbe, 0x00, 0x00, 0x01, 0x00, // mov esi, 0x10000
        0x31, 0xdb, // xor ebx, ebx
    ];
    let top = c.len();
    c.extend_from_slice(&[
        0x8b, 0x06, // mov eax, [esi]
        0x01, 0xc8, // add eax, ecx
        0x35, 0x5a, 0x5a, 0x00, 0x00, // xor eax, 0x5a5a
        0x89, 0x46, 0x04, // mov [esi+4], eax
        0x83, 0xc6, 0x04, // add esi, 4
        0x81, 0xe6, 0xff, 0xff, 0x01, 0x00, // and esi, 0x1ffff
        0x39, 0xd8, // cmp eax, ebx
        0x72, 0x01, // jb +1
        0x43, // inc ebx
        0x49, // dec ecx
    ]);
    let rel = top as isize - (c.len() as isize + 2);
    c.extend_from_slice(&[0x75, rel as i8 as u8]); // jnz top
    c
}

fn flat_cpu() -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new(2 << 20);
    let p = program();
    bus.memory[CODE_AT..CODE_AT + p.len()].copy_from_slice(&p);
    let mut cpu = Cpu::new();
    let mut s = cpu.state();
    s.cr0 |= 1;
    let code = Segment { selector: 8, base: 0, limit: u32::MAX, access: 0xc09b, valid: true };
    let data = Segment { selector: 16, base: 0, limit: u32::MAX, access: 0xc093, valid: true };
    s.seg = [data, code, data, data, data, data];
    s.eip = CODE_AT as u32;
    s.gpr[4] = 0x8_0000;
    cpu.set_state(&s);
    (cpu, bus)
}

fn bench(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let (mut cpu, mut bus) = flat_cpu();
    let mut g = c.benchmark_group("interpreter");
    g.throughput(Throughput::Elements(N));
    g.bench_function("compute_loop_pm32_flat", |b| {
        b.iter(|| {
            let e = cpu.run(&mut bus, N);
            assert_eq!(e, vessel_core::cpu::RunExit::Limit);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
