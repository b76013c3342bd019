# fdctest: a floppy boot sector that drives the floppy controller directly (no BIOS) from a
# table of operations and prints every register value and result byte in hex on COM1, between
# "FDCTEST BEGIN" and "FDCTEST END". The boot sector loads the table (sectors 2-3) with INT 13h.
# The same disk boots on qemu-system-i386 and on Vessel and the two transcripts are compared,
# each line (tests/tests/guests.rs). Interrupts stay disabled: completion is polled through
# the main status register. Built by tests/guests/build.sh with GNU as/ld.

    .code16
    .text
    .globl _start
_start:
    ljmp $0, $start
start:
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %sp
    cld
    mov $0x0202, %ax            # the operation table is in sectors 2-3: load it with INT 13h
    mov $0x7e00, %bx
    mov $0x0002, %cx
    xor %dh, %dh                # (dl: the boot drive)
    int $0x13
    cli                         # from here on only the controller's own registers
    mov $0x3fb, %dx             # COM1 115200 8N1
    mov $0x80, %al
    out %al, %dx
    mov $0x3f8, %dx
    mov $1, %al
    out %al, %dx
    inc %dx
    xor %al, %al
    out %al, %dx
    mov $0x3fb, %dx
    mov $3, %al
    out %al, %dx
    mov $begin_msg, %si
    call puts
    mov $script, %si

next:
    lodsb
    cmp $1, %al
    je op_cmd
    cmp $2, %al
    je op_out
    cmp $4, %al
    je op_dma
    cmp $5, %al
    je op_status
    cmp $6, %al
    je op_sum
    mov $end_msg, %si
    call puts
halt:
    hlt
    jmp halt

# 1 n b1..bn: send a command, then read the result phase; non-DMA data bytes are summed
op_cmd:
    mov $'C', %al
    call putc
    lodsb
    movzbw %al, %cx
1:  call wait_rqm
    test $0x40, %al
    jnz 2f                      # controller wants to talk early: skip the remaining bytes
    lodsb
    mov $0x3f5, %dx
    out %al, %dx
    loop 1b
2:  add %cx, %si
    xor %bx, %bx                # data byte sum
    xor %di, %di                # data byte count
3:  call wait_rqm
    test $0x40, %al
    jz 5f
    mov %al, %ah
    mov $0x3f5, %dx
    in %dx, %al
    test $0x20, %ah
    jz 4f
    xor %ah, %ah
    add %ax, %bx
    inc %di
    jmp 3b
4:  call puthex
    jmp 3b
5:  test %di, %di
    jz 6f
    mov $'d', %al
    call putc
    mov %di, %ax
    call puthex16
    mov %bx, %ax
    call puthex16
6:  call newline
    jmp next

# 2 port(lo) port(hi) v: out v to port
op_out:
    lodsw
    mov %ax, %dx
    lodsb
    out %al, %dx
    jmp next

# 4 lo hi mode: DMA channel 2 at 0x8000, count lo/hi (bytes - 1), mode register value
op_dma:
    mov $0x06, %al
    out %al, $0x0a
    out %al, $0x0c
    xor %al, %al
    out %al, $0x04
    mov $0x80, %al
    out %al, $0x04
    xor %al, %al
    out %al, $0x81
    out %al, $0x0c
    lodsb
    out %al, $0x05
    lodsb
    out %al, $0x05
    lodsb
    out %al, $0x0b
    mov $0x02, %al
    out %al, $0x0a
    jmp next

# 5: MSR, DIR, DOR, then DMA status and channel 2's current count
op_status:
    mov $'S', %al
    call putc
    mov $0x3f4, %dx
    in %dx, %al
    call puthex
    mov $0x3f7, %dx
    in %dx, %al
    and $0x80, %al
    call puthex
    mov $0x3f2, %dx
    in %dx, %al
    call puthex
    in $0x08, %al
    and $0x0f, %al
    call puthex
    out %al, $0x0c
    in $0x05, %al
    mov %al, %ah
    in $0x05, %al
    xchg %al, %ah
    call puthex16
    call newline
    jmp next

# 6 lo hi: 16-bit sum of that many bytes at 0x8000 (and clear them)
op_sum:
    lodsw
    mov %ax, %cx
    push %si
    mov $0x8000, %si
    xor %bx, %bx
    xor %ah, %ah
1:  lodsb
    movb $0, -1(%si)
    add %ax, %bx
    loop 1b
    pop %si
    mov $'M', %al
    call putc
    mov %bx, %ax
    call puthex16
    call newline
    jmp next

# wait until MSR has RQM (returns MSR in al); after ~2^22 polls give up and print 'T'
wait_rqm:
    push %ecx
    mov $0x400000, %ecx
1:  mov $0x3f4, %dx
    in %dx, %al
    test $0x80, %al
    jnz 2f
    dec %ecx
    jnz 1b
    mov $'T', %al
    call putc
    xor %al, %al
2:  pop %ecx
    ret

puthex16:
    push %ax
    mov %ah, %al
    call puthex_raw
    pop %ax
puthex:
    call puthex_raw
    mov $' ', %al
    jmp putc
puthex_raw:
    push %ax
    shr $4, %al
    call nibble
    pop %ax
nibble:
    and $0x0f, %al
    add $'0', %al
    cmp $'9', %al
    jbe putc
    add $7, %al
putc:
    push %dx
    push %ax
    mov $0x3fd, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    pop %ax
    mov $0x3f8, %dx
    out %al, %dx
    pop %dx
    ret
newline:
    mov $'\r', %al
    call putc
    mov $'\n', %al
    jmp putc
puts:
    lodsb
    test %al, %al
    jz 1f
    call putc
    jmp puts
1:  ret

begin_msg: .asciz "\r\nFDCTEST BEGIN\r\n"
end_msg:   .asciz "FDCTEST END\r\n"

    .org 510
    .byte 0x55, 0xaa

#define CMD(n) .byte 1, n,
#define OUTB(port, v) .byte 2, (port) & 0xff, (port) >> 8, v
#define DMA(count, mode) .byte 4, ((count) - 1) & 0xff, ((count) - 1) >> 8, mode
#define STATUS .byte 5
#define SUM(n) .byte 6, (n) & 0xff, (n) >> 8
script:
    STATUS
    OUTB(0x3f2, 0x08)                  # hold in reset (no MSR read here: QEMU's MSR read ends reset)
    OUTB(0x3f2, 0x1c)                  # out of reset, drive 0 motor
    STATUS
    CMD(1) 0x08
    CMD(1) 0x08
    CMD(1) 0x08
    CMD(1) 0x08
    CMD(1) 0x08                        # nothing left: invalid
    CMD(1) 0x10                        # VERSION
    CMD(1) 0x18                        # PART ID
    CMD(3) 0x03, 0xaf, 0x02            # SPECIFY, DMA
    CMD(4) 0x13, 0x00, 0x57, 0x00      # CONFIGURE EIS, FIFO off, poll off, thr 7
    CMD(1) 0x0e                        # DUMPREG
    CMD(1) 0x94                        # LOCK
    OUTB(0x3f4, 0x80)                  # DSR software reset
    OUTB(0x3f2, 0x1c)                  # (QEMU's DSR reset also clears the DOR motor bits)
    CMD(1) 0x08
    CMD(1) 0x0e
    CMD(1) 0x14                        # UNLOCK
    CMD(1) 0x00                        # invalid
    CMD(2) 0x04, 0x00                  # SENSE DRIVE STATUS 0
    CMD(2) 0x04, 0x01                  # drive 1 (not installed)
    CMD(2) 0x07, 0x00                  # RECALIBRATE
    STATUS
    CMD(1) 0x08
    CMD(2) 0x07, 0x01
    CMD(1) 0x08
    CMD(3) 0x0f, 0x04, 5               # SEEK 5, head 1
    STATUS
    CMD(1) 0x08
    CMD(3) 0xcf, 0x00, 3               # relative seek +3
    CMD(1) 0x08
    CMD(3) 0x8f, 0x00, 3               # relative seek -3
    CMD(1) 0x08
    OUTB(0x3f7, 0x00)                  # 500 kb/s
    DMA(1024, 0x46)
    CMD(9) 0xe6, 0x04, 5, 1, 4, 2, 18, 0x1b, 0xff     # 2 sectors, TC
    STATUS
    SUM(1024)
    DMA(2048, 0x46)
    CMD(9) 0xe6, 0x00, 5, 0, 17, 2, 18, 0x1b, 0xff    # MT across heads, TC on head 1
    SUM(2048)
    DMA(1024, 0x46)
    CMD(9) 0xe6, 0x04, 5, 1, 17, 2, 18, 0x1b, 0xff    # MT, TC exactly at EOT of head 1
    DMA(1024, 0x46)
    CMD(9) 0x66, 0x00, 5, 0, 17, 2, 18, 0x1b, 0xff    # no MT, TC at EOT
    DMA(4096, 0x46)
    CMD(9) 0x66, 0x00, 5, 0, 17, 2, 18, 0x1b, 0xff    # EOT before TC
    STATUS
    SUM(1024)
    DMA(512, 0x46)
    CMD(9) 0xe6, 0x00, 5, 0, 19, 2, 19, 0x1b, 0xff    # no such sector
    DMA(512, 0x46)
    CMD(9) 0xe6, 0x00, 7, 0, 1, 2, 18, 0x1b, 0xff     # cylinder 7 without SEEK
    SUM(512)
    CMD(1) 0x0e
    OUTB(0x3f7, 0x02)                  # 250 kb/s: wrong rate for 1.44M
    DMA(512, 0x46)
    CMD(9) 0xe6, 0x00, 7, 0, 1, 2, 18, 0x1b, 0xff
    CMD(2) 0x4a, 0x00                  # READ ID
    OUTB(0x3f7, 0x00)
    CMD(2) 0x4a, 0x00
    DMA(512, 0x46)
    CMD(9) 0x46, 0x00, 7, 0, 1, 2, 18, 0x1b, 0xff     # FM off: MFM read, no MT, TC
    CMD(3) 0x03, 0xaf, 0x03            # SPECIFY non-DMA
    CMD(9) 0x66, 0x00, 7, 0, 17, 2, 18, 0x1b, 0xff    # PIO: sectors 17-18
    CMD(3) 0x03, 0xaf, 0x02
    CMD(2) 0x12, 0x83                  # PERPENDICULAR
    CMD(1) 0x0e
    CMD(2) 0x12, 0x80
    STATUS
    .byte 0
    .org 1536
