"""Kernel constants for the calls in pallet.syscalls, and spelling flags out in error messages.

Values are from the Linux UAPI headers (include/uapi/linux/mount.h, sched.h, prctl.h, capability.h).
"""

# mount(2) flags, include/uapi/linux/mount.h
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_I_VERSION = 0x800000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MOUNT_FLAG_NAMES = {
    v: k for k, v in dict(globals()).items() if k.startswith("MS_") and isinstance(v, int)
}

# umount2(2)
MNT_FORCE = 0x1
MNT_DETACH = 0x2
MNT_EXPIRE = 0x4
UMOUNT_NOFOLLOW = 0x8

# clone(2) / unshare(2) namespace flags, include/uapi/linux/sched.h
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

CLONE_FLAG_NAMES = {
    v: k for k, v in dict(globals()).items() if k.startswith("CLONE_") and isinstance(v, int)
}

# open_tree(2), move_mount(2), mount_setattr(2)
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = 0o2000000
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_IDMAP = 0x100000

# prctl(2), include/uapi/linux/prctl.h
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# capget/capset, include/uapi/linux/capability.h
LINUX_CAPABILITY_VERSION_3 = 0x20080522

# ioctl(2) for terminals, include/uapi/asm-generic/ioctls.h
TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


def describe(value: int, names: dict[int, str]) -> str:
    """Spell a flag word out as NAME|NAME|0x..., for error messages."""
    parts = []
    rest = value
    for bit, name in sorted(names.items()):
        if bit and value & bit == bit:
            parts.append(name)
            rest &= ~bit
    if rest or not parts:
        parts.append(hex(rest))
    return "|".join(parts)
