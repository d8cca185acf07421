"""The embedded hello-world image: a static ELF program Pallet writes byte by byte, no toolchain.

File layout (ELF-64 Object File Format, version 1.5 draft 2, and elf(5)), little-endian, one
segment loaded at BASE that spans the whole file:

    offset  size  what
    0       64    Elf64_Ehdr  e_ident = 7f 'E' 'L' 'F', ELFCLASS64, ELFDATA2LSB, EV_CURRENT,
                              ELFOSABI_SYSV, padding; e_type ET_EXEC; e_machine EM_X86_64 (62)
                              or EM_AARCH64 (183); e_entry = BASE + 120; e_phoff 64; no section
                              headers (e_shoff 0, e_shnum 0, e_shstrndx SHN_UNDEF)
    64      56    Elf64_Phdr  PT_LOAD, PF_R|PF_X, p_offset 0, p_vaddr = p_paddr = BASE,
                              p_filesz = p_memsz = file size, p_align = page size
    120     n     code        write(1, msg, len); exit_group(0)   (120 is 4-aligned for AArch64)
    120+n   len   msg         the greeting, UTF-8

No PT_INTERP and no PT_DYNAMIC, so the kernel's binfmt_elf maps the segment and jumps to e_entry
directly: the program needs no libc and no loader in the image. Syscall numbers and calling
conventions are from syscall(2): x86_64 puts the number in rax, arguments in rdi, rsi, rdx and
uses `syscall` (write 1, exit_group 231); AArch64 puts the number in x8, arguments in x0-x2 and
uses `svc #0` (write 64, exit_group 94, from the generic asm-generic/unistd.h table).

The message is shorter than PIPE_BUF (4096), so one write(2) to a pipe is atomic and complete
(pipe(7)); the program does not loop on short writes.
"""

from __future__ import annotations

import struct

from pallet.errors import InvalidArgument
from pallet.image.builtin.rootfs import history_entry, image_config, normalize_machine

BASE = 0x400000          # the traditional ET_EXEC load address; non-zero, above vm.mmap_min_addr
EHDR_SIZE = 64           # sizeof(Elf64_Ehdr)
PHDR_SIZE = 56           # sizeof(Elf64_Phdr)
CODE_OFFSET = EHDR_SIZE + PHDR_SIZE

ET_EXEC = 2
EM_X86_64 = 62
EM_AARCH64 = 183
PT_LOAD = 1
PF_X, PF_W, PF_R = 1, 2, 4

# machine -> (e_machine, p_align). AArch64 kernels may run with 64 KiB pages, and GNU ld's
# max-page-size for aarch64 is 64 KiB; p_vaddr and p_offset stay congruent either way.
_MACHINES = {"x86_64": (EM_X86_64, 0x1000), "aarch64": (EM_AARCH64, 0x10000)}

_GREETING = """
Hello from Pallet!
This message shows that your installation appears to be working correctly.

To generate this message, Pallet took the following steps:
 1. The Pallet client contacted the Pallet daemon.
 2. The daemon made the "hello-world" image from the copy embedded in
    Pallet itself: no registry, no network ({machine}).
 3. The daemon created a new container from that image, which ran this
    program: a {size}-byte static ELF file Pallet wrote by hand, in Python.
 4. The daemon streamed its output to the Pallet client, which sent it
    to your terminal.

To try something more ambitious, make a busybox image and run a shell:
 $ pallet image bootstrap busybox
 $ pallet run -it busybox sh
"""


def greeting(arch: str, size: int) -> bytes:
    """The text the program prints, naming the machine and the program's own size."""
    return _GREETING.format(machine=normalize_machine(arch), size=size).encode()


def _code_x86_64(msg_addr: int, msg_len: int) -> bytes:
    return b"".join([
        b"\xb8" + struct.pack("<I", 1),          # mov eax, 1        (SYS_write)
        b"\xbf" + struct.pack("<I", 1),          # mov edi, 1        (stdout)
        b"\xbe" + struct.pack("<I", msg_addr),   # mov esi, msg      (zero-extends into rsi)
        b"\xba" + struct.pack("<I", msg_len),    # mov edx, len
        b"\x0f\x05",                             # syscall
        b"\xb8" + struct.pack("<I", 231),        # mov eax, 231      (SYS_exit_group)
        b"\x31\xff",                             # xor edi, edi      (status 0)
        b"\x0f\x05",                             # syscall
    ])


def _movz(rd: int, imm16: int) -> int:
    """MOVZ Xd, #imm16 (Arm ARM C6.2: sf=1 opc=10 100101 hw=00)."""
    return 0xD2800000 | (imm16 << 5) | rd


def _adr(rd: int, offset: int) -> int:
    """ADR Xd, pc+offset (Arm ARM C6.2: op=0 immlo:2 10000 immhi:19 Rd)."""
    imm = offset & 0x1FFFFF
    return 0x10000000 | ((imm & 3) << 29) | ((imm >> 2) << 5) | rd


SVC_0 = 0xD4000001        # SVC #0


def _code_aarch64(msg_offset_from_code: int, msg_len: int) -> bytes:
    # ADR is the third instruction, at code + 8: its offset is relative to its own address.
    words = [
        _movz(8, 64),                              # mov x8, #64      (__NR_write)
        _movz(0, 1),                               # mov x0, #1       (stdout)
        _adr(1, msg_offset_from_code - 8),         # adr x1, msg
        _movz(2, msg_len),                         # mov x2, #len
        SVC_0,                                     # svc #0
        _movz(8, 94),                              # mov x8, #94      (__NR_exit_group)
        _movz(0, 0),                               # mov x0, #0
        SVC_0,                                     # svc #0
    ]
    return struct.pack(f"<{len(words)}I", *words)


def _code(machine: str, msg_len: int) -> bytes:
    # Both code sequences have a fixed length whatever the operands, so a first pass with
    # placeholders gives the message's offset.
    if machine == "x86_64":
        return _code_x86_64(BASE + CODE_OFFSET + len(_code_x86_64(0, 0)), msg_len)
    return _code_aarch64(len(_code_aarch64(0, 0)), msg_len)


def hello_elf(arch: str) -> bytes:
    """The hello program for `arch` (x86_64/amd64 or aarch64/arm64) as the bytes of an ELF file."""
    machine = normalize_machine(arch)
    if machine not in _MACHINES:
        raise InvalidArgument(f"hello-world: no program for architecture {arch!r} (have x86_64, aarch64)")
    e_machine, align = _MACHINES[machine]
    # The greeting names the file size, which depends on the greeting's length: iterate to the
    # fixed point (the digit count changes at most once for sizes this small).
    size = 0
    while True:
        msg = greeting(machine, size)
        code = _code(machine, len(msg))
        total = CODE_OFFSET + len(code) + len(msg)
        if total == size:
            break
        size = total

    e_ident = b"\x7fELF" + bytes([2, 1, 1, 0, 0]) + bytes(7)   # 64-bit, LSB, EV_CURRENT, SYSV
    ehdr = e_ident + struct.pack(
        "<HHIQQQIHHHHHH",
        ET_EXEC, e_machine, 1,                 # e_type, e_machine, e_version
        BASE + CODE_OFFSET, EHDR_SIZE, 0,      # e_entry, e_phoff, e_shoff
        0, EHDR_SIZE, PHDR_SIZE, 1,            # e_flags, e_ehsize, e_phentsize, e_phnum
        0, 0, 0,                               # e_shentsize, e_shnum, e_shstrndx
    )
    phdr = struct.pack(
        "<IIQQQQQQ",
        PT_LOAD, PF_R | PF_X, 0,               # p_type, p_flags, p_offset
        BASE, BASE, total, total, align,       # p_vaddr, p_paddr, p_filesz, p_memsz, p_align
    )
    elf = ehdr + phdr + code + msg
    assert len(ehdr) == EHDR_SIZE and len(phdr) == PHDR_SIZE and len(elf) == total
    return elf


def hello_files(arch: str) -> dict[str, tuple[bytes, int]]:
    """The hello-world image's only layer, as path -> (content, mode) for `files_tar`."""
    return {"/hello": (hello_elf(arch), 0o755)}


def hello_config(arch: str, diff_ids: list[str] | None = None, created: str | None = None) -> dict:
    """The OCI image config of hello-world; the caller passes the layer's diff_id once it has the tar."""
    return image_config(
        arch,
        cmd=["/hello"],
        env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        diff_ids=list(diff_ids or []),
        created=created,
        history=[history_entry("pallet: embedded hello-world program (hello.py)", created=created),
                 history_entry('CMD ["/hello"]', created=created, empty_layer=True)],
    )
