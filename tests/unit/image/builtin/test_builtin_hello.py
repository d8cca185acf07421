"""The hand-written hello ELF: header fields per the ELF-64 spec / elf(5), code that points at the message."""

from __future__ import annotations

import struct

import pytest

from pallet.errors import InvalidArgument
from pallet.image.builtin.hello import (
    BASE,
    EM_AARCH64,
    EM_X86_64,
    ET_EXEC,
    PF_R,
    PF_W,
    PF_X,
    PT_LOAD,
    hello_config,
    hello_elf,
    hello_files,
)

MACHINES = {"x86_64": EM_X86_64, "aarch64": EM_AARCH64}


def _ehdr(elf: bytes) -> dict:
    keys = ("e_type", "e_machine", "e_version", "e_entry", "e_phoff", "e_shoff", "e_flags", "e_ehsize",
            "e_phentsize", "e_phnum", "e_shentsize", "e_shnum", "e_shstrndx")
    return dict(zip(keys, struct.unpack_from("<HHIQQQIHHHHHH", elf, 16)))


def _phdr(elf: bytes, off: int) -> dict:
    keys = ("p_type", "p_flags", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz", "p_align")
    return dict(zip(keys, struct.unpack_from("<IIQQQQQQ", elf, off)))


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_elf_header(machine):
    elf = hello_elf(machine)
    assert elf[:4] == b"\x7fELF"
    assert elf[4:7] == bytes([2, 1, 1])          # ELFCLASS64, ELFDATA2LSB, EV_CURRENT
    assert elf[7] == 0 and elf[8:16] == bytes(8)  # ELFOSABI_SYSV, ABI version 0, padding
    h = _ehdr(elf)
    assert h["e_type"] == ET_EXEC == 2
    assert h["e_machine"] == MACHINES[machine]
    assert h["e_version"] == 1
    assert (h["e_phoff"], h["e_ehsize"], h["e_phentsize"], h["e_phnum"]) == (64, 64, 56, 1)
    assert (h["e_shoff"], h["e_shnum"], h["e_shstrndx"]) == (0, 0, 0)


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_one_load_segment_covers_file_and_entry(machine):
    elf = hello_elf(machine)
    h = _ehdr(elf)
    p = _phdr(elf, h["e_phoff"])
    assert p["p_type"] == PT_LOAD == 1
    assert p["p_flags"] == PF_R | PF_X and not p["p_flags"] & PF_W
    assert p["p_offset"] == 0 and p["p_vaddr"] == p["p_paddr"] == BASE
    assert p["p_filesz"] == p["p_memsz"] == len(elf)
    assert p["p_align"] >= 0x1000 and p["p_vaddr"] % p["p_align"] == p["p_offset"] % p["p_align"]
    assert p["p_vaddr"] <= h["e_entry"] < p["p_vaddr"] + p["p_filesz"]
    assert h["e_entry"] == BASE + 64 + 56
    if machine == "aarch64":
        assert h["e_entry"] % 4 == 0


def _message(elf: bytes) -> bytes:
    start = elf.index(b"\nHello from Pallet!")
    return elf[start:]


def test_x86_64_code_writes_the_message_then_exits_0():
    elf = hello_elf("x86_64")
    code = elf[120:]
    msg = _message(elf)
    assert code[0] == 0xB8 and struct.unpack_from("<I", code, 1)[0] == 1            # eax = SYS_write
    assert code[5] == 0xBF and struct.unpack_from("<I", code, 6)[0] == 1            # edi = 1
    assert code[10] == 0xBE and struct.unpack_from("<I", code, 11)[0] == BASE + elf.index(msg)
    assert code[15] == 0xBA and struct.unpack_from("<I", code, 16)[0] == len(msg)
    assert code[20:22] == b"\x0f\x05"
    assert code[22] == 0xB8 and struct.unpack_from("<I", code, 23)[0] == 231        # SYS_exit_group
    assert code[27:31] == b"\x31\xff\x0f\x05"


def test_aarch64_code_writes_the_message_then_exits_0():
    elf = hello_elf("aarch64")
    words = struct.unpack_from("<8I", elf, 120)
    msg = _message(elf)

    def movz(w: int) -> tuple[int, int]:
        assert w & 0xFFE00000 == 0xD2800000
        return w & 0x1F, (w >> 5) & 0xFFFF

    assert movz(words[0]) == (8, 64) and movz(words[1]) == (0, 1)
    adr = words[2]
    assert adr & 0x9F000000 == 0x10000000 and adr & 0x1F == 1
    imm = (((adr >> 5) & 0x7FFFF) << 2) | ((adr >> 29) & 3)
    assert 120 + 8 + imm == elf.index(msg)
    assert movz(words[3]) == (2, len(msg))
    assert words[4] == words[7] == 0xD4000001                                       # svc #0
    assert movz(words[5]) == (8, 94) and movz(words[6]) == (0, 0)


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_message_is_friendly_and_small(machine):
    elf = hello_elf(machine)
    msg = _message(elf).decode()
    assert len(msg.encode()) < 1024
    assert "Pallet" in msg and "hello-world" in msg and machine in msg
    assert f"a {len(elf)}-byte static ELF" in msg
    assert msg.endswith("\n")


def test_oci_names_and_determinism():
    assert hello_elf("amd64") == hello_elf("x86_64") == hello_elf("x86_64")
    assert hello_elf("arm64") == hello_elf("aarch64")
    with pytest.raises(InvalidArgument):
        hello_elf("riscv64")


def test_hello_files_and_config():
    assert hello_files("x86_64") == {"/hello": (hello_elf("x86_64"), 0o755)}
    cfg = hello_config("aarch64", diff_ids=["sha256:" + "a" * 64])
    assert cfg["architecture"] == "arm64" and cfg["variant"] == "v8" and cfg["os"] == "linux"
    assert cfg["config"]["Cmd"] == ["/hello"]
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}
    assert [h.get("empty_layer", False) for h in cfg["history"]] == [False, True]
    assert all(h["created_by"] for h in cfg["history"])
    empty = hello_config("x86_64")
    assert empty["architecture"] == "amd64" and "variant" not in empty
    assert empty["rootfs"]["diff_ids"] == [] and "created" not in empty
