"""Root filesystems and layer tars for the built-in images: busybox, debian, and plain file sets.

Layer tars follow the OCI image spec's layer format (image-spec v1.1, layer.md): POSIX.1-2001
(PAX) ustar, uncompressed, paths relative to the root without a leading "/" or "./", directories
ending in "/". To make the same tree give the same bytes (and so the same diff_id) on every run:

- entries are written depth-first, siblings sorted by the bytes of their names;
- owners are numeric only (uname and gname empty), modes keep the setuid/setgid/sticky bits;
- with `mtime` given, every mtime is clamped to it, as SOURCE_DATE_EPOCH asks
  (https://reproducible-builds.org/specs/source-date-epoch/), and mtimes are whole seconds so
  Python's tarfile adds no PAX "mtime" record;
- a file with several links is written once and then as hard links (LNKTYPE) to the first path;
- symlinks, FIFOs and character/block devices are kept; sockets are skipped (tar has no type for
  them, and Docker skips them too);
- extended attributes go in PAX records "SCHILY.xattr.<name>" (the GNU tar / Docker convention),
  sorted by name; binary values make tarfile add "hdrcharset=BINARY" before them.

Config builders produce the OCI image config with the field names of image-spec config.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from typing import IO, Any

from pallet.errors import InvalidArgument, NotSupported, Unavailable

BUSYBOX = "/bin/busybox"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# os.uname().machine -> (OCI architecture, OCI variant); values from the Go GOARCH names the
# image spec uses (config.md "architecture"), arm64's variant from the image-index platform list.
MACHINE_TO_OCI: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
}
_OCI_TO_MACHINE = {arch: machine for machine, (arch, _) in MACHINE_TO_OCI.items()}


def normalize_machine(arch: str) -> str:
    """Kernel machine name for a kernel or OCI architecture name ("amd64" -> "x86_64")."""
    return _OCI_TO_MACHINE.get(arch, arch)


def oci_platform(arch: str | None = None) -> tuple[str, str | None]:
    """(architecture, variant) for a kernel or OCI architecture name, default the host's."""
    machine = normalize_machine(arch or os.uname().machine)
    if machine not in MACHINE_TO_OCI:
        raise NotSupported(f"architecture {machine!r} is not supported (have {', '.join(MACHINE_TO_OCI)})")
    return MACHINE_TO_OCI[machine]


# --- OCI image config --------------------------------------------------------------------------

def history_entry(created_by: str, *, created: str | None = None, comment: str | None = None,
                  empty_layer: bool = False) -> dict[str, Any]:
    """One `history` item; optional fields are left out rather than written empty."""
    entry: dict[str, Any] = {}
    if created is not None:
        entry["created"] = created
    entry["created_by"] = created_by
    if comment is not None:
        entry["comment"] = comment
    if empty_layer:
        entry["empty_layer"] = True
    return entry


def image_config(arch: str, cmd: list[str], env: list[str], diff_ids: list[str],
                 created: str | None, history: list[dict[str, Any]]) -> dict[str, Any]:
    """An OCI image config (config.md): platform, run-time defaults, layer diff_ids, history.

    `history` must hold one entry without `empty_layer` per diff_id, in order (config.md: "the
    history ... must line up with the layers"); the caller may leave `diff_ids` empty while the
    layers are still being written, and is then responsible for filling them in.
    """
    architecture, variant = oci_platform(arch)
    layered = sum(1 for h in history if not h.get("empty_layer"))
    if diff_ids and layered != len(diff_ids):
        raise InvalidArgument(f"image config: {len(diff_ids)} diff_ids but {layered} history entries "
                              "that make a layer")
    config: dict[str, Any] = {}
    if created is not None:
        config["created"] = created
    config["architecture"] = architecture
    config["os"] = "linux"
    if variant is not None:
        config["variant"] = variant
    config["config"] = {"Env": list(env), "Cmd": list(cmd)}
    config["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    config["history"] = [dict(h) for h in history]
    return config


# --- root filesystems ---------------------------------------------------------------------------

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"


def busybox_rootfs(dest_dir: str | os.PathLike[str], busybox: str = BUSYBOX) -> None:
    """Fill `dest_dir` (created if missing) with a busybox system: the binary and its applet
    symlinks in /bin, /etc/passwd and /etc/group, /tmp (1777), /root, and the /proc, /sys, /dev
    mount points.

    Deterministic: the applets are linked in sorted order and every entry gets the busybox
    binary's mtime, so `layer_tar` of the result is the same bytes for the same busybox.
    """
    if not os.access(busybox, os.X_OK):
        raise NotSupported(f"no busybox binary at {busybox} (install Debian's busybox-static)")
    root = os.fspath(dest_dir)
    os.makedirs(root, exist_ok=True)
    for d, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555), ("root", 0o700),
                    ("sys", 0o555), ("tmp", 0o1777)):
        path = os.path.join(root, d)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)          # makedirs applies the umask, and cannot set the sticky bit
    target = os.path.join(root, "bin", "busybox")
    shutil.copyfile(busybox, target)
    os.chmod(target, 0o755)
    listing = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    for applet in sorted(set(listing.split())):
        link = os.path.join(root, "bin", applet)
        if applet != "busybox" and "/" not in applet and not os.path.lexists(link):
            os.symlink("busybox", link)
    for name, text in (("passwd", _PASSWD), ("group", _GROUP)):
        with open(os.path.join(root, "etc", name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(root, "etc", name), 0o644)
    stamp = int(os.stat(busybox).st_mtime)
    for path in _walk(root):
        os.utime(path, (stamp, stamp), follow_symlinks=False)
    os.utime(root, (stamp, stamp))


# debuerreotype's minimizing-config (what Docker's official debian images use): services must not
# start inside a container while packages install, see invoke-rc.d(8) "POLICY-RC.D".
_POLICY_RC_D = "#!/bin/sh\n# Pallet: do not start services in a container image (invoke-rc.d(8)).\nexit 101\n"

_MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/maybe-merged-usr"

# Files that record the build machine or the build's moment rather than the system: emptied, or
# removed, so the image does not carry the host's name or resolver and differs less between builds.
_EMPTIED = ("etc/hostname", "etc/resolv.conf", "etc/machine-id")
_REMOVED_GLOBS = ("var/lib/apt/lists/*_*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
                  "var/cache/ldconfig/aux-cache", "var/log/bootstrap.log", "var/log/dpkg.log",
                  "var/log/alternatives.log", "var/log/apt/*.log")


def debian_rootfs(dest_dir: str | os.PathLike[str], suite: str = "bookworm", variant: str = "minbase",
                  mirror: str | None = None, *, arch: str | None = None, timeout: float = 3600) -> str:
    """Install Debian `suite` into the empty or missing `dest_dir` with mmdebstrap (preferred) or
    debootstrap; returns the tool used.

    Needs the network to `mirror` (default deb.debian.org) and, for debootstrap, root. Raises
    NotSupported when neither tool is installed (apt-get install mmdebstrap), Unavailable when the
    tool fails (the message ends with its last lines of output). SOURCE_DATE_EPOCH in the
    environment is passed on; mmdebstrap then makes a reproducible tree.
    """
    root = os.fspath(dest_dir)
    if os.path.isdir(root) and os.listdir(root):
        raise InvalidArgument(f"debian rootfs: {root} is not empty")
    deb_arch = {"amd64": "amd64", "arm64": "arm64"}[oci_platform(arch)[0]]
    if shutil.which("mmdebstrap"):
        tool = "mmdebstrap"
        os.makedirs(root, exist_ok=True)
        cmd = ["mmdebstrap", f"--variant={variant}", f"--architectures={deb_arch}", "--format=directory",
               "--quiet"]
        # Without this hook apt satisfies init-system-helpers' "usrmerge | usr-is-merged" with
        # usrmerge, which pulls in perl (about 50 MB); the hook merges /usr itself and installs
        # usr-is-merged instead, as debootstrap does (mmdebstrap(1), "--merged-usr").
        if os.path.isdir(_MERGED_USR_HOOK):
            cmd.append(f"--hook-dir={_MERGED_USR_HOOK}")
        cmd += [suite, root]
    elif shutil.which("debootstrap"):
        tool = "debootstrap"
        if os.geteuid() != 0:
            raise NotSupported("debootstrap needs root; install mmdebstrap for an unprivileged build")
        cmd = ["debootstrap", f"--variant={variant}", f"--arch={deb_arch}", suite, root]
    else:
        raise NotSupported("making a debian image needs mmdebstrap or debootstrap "
                           "(apt-get install mmdebstrap)")
    if mirror:
        cmd.append(mirror)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"{tool} {suite} did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise Unavailable(f"{tool} {suite} failed (exit {proc.returncode}):\n{tail}")
    _tidy_debian(root)
    return tool


def _tidy_debian(root: str) -> None:
    import glob

    for rel in _EMPTIED:
        path = os.path.join(root, rel)
        if os.path.lexists(path):
            os.unlink(path)
            with open(path, "w"):
                pass
            os.chmod(path, 0o644)
    for pattern in _REMOVED_GLOBS:
        for path in glob.glob(os.path.join(root, pattern)):
            if os.path.isfile(path) or os.path.islink(path):
                os.unlink(path)
    policy = os.path.join(root, "usr", "sbin", "policy-rc.d")
    with open(policy, "w") as f:
        f.write(_POLICY_RC_D)
    os.chmod(policy, 0o755)


# --- layer tars ---------------------------------------------------------------------------------

class _HashingWriter(io.RawIOBase):
    """Passes writes through to `out` and hashes them: the tar's sha256 is the layer's diff_id."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._out.write(view)
        self.sha256.update(view)
        self.size += len(view)
        return len(view)


def _walk(root: str) -> Iterator[str]:
    """Every path under `root` (not `root` itself), depth-first, siblings sorted by name bytes,
    a directory before its contents; symlinks to directories are not followed."""
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: os.fsencode(e.name))
    for entry in entries:
        yield entry.path
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path)


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:                # ENOTSUP on filesystems without xattrs
        return {}
    records = {}
    for name in sorted(names):
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        # tarfile carries PAX values as str; surrogateescape round-trips arbitrary bytes.
        records[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    return records


@contextlib.contextmanager
def _tar_writer(out: IO[bytes]) -> Iterator[tuple[tarfile.TarFile, _HashingWriter]]:
    writer = _HashingWriter(out)
    # Stream mode ("w|") so `out` may be a pipe or anything else that cannot seek.
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        yield tar, writer


def layer_tar(src_dir: str | os.PathLike[str], out_fileobj: IO[bytes], *, mtime: int | None = None,
              owner: tuple[int, int] | None = None) -> str:
    """Write `src_dir`'s contents to `out_fileobj` as a deterministic uncompressed layer tar (see the
    module docstring); returns the tar's digest "sha256:<hex>", the layer's diff_id.

    `mtime` clamps every entry's mtime (SOURCE_DATE_EPOCH semantics); `owner` = (uid, gid)
    replaces every entry's owner, for trees built by an unprivileged user.
    """
    root = os.fspath(src_dir)
    links: dict[tuple[int, int], str] = {}
    with _tar_writer(out_fileobj) as (tar, writer):
        for path in _walk(root):
            st = os.lstat(path)
            if stat.S_ISSOCK(st.st_mode):
                continue
            name = os.path.relpath(path, root)
            info = tarfile.TarInfo(name)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid = owner if owner is not None else (st.st_uid, st.st_gid)
            info.uname = info.gname = ""
            info.mtime = int(st.st_mtime) if mtime is None else min(int(st.st_mtime), mtime)
            info.pax_headers = _xattrs(path)
            key = (st.st_dev, st.st_ino)
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1 and key in links:
                info.type = tarfile.LNKTYPE
                info.linkname = links[key]
                tar.addfile(info)
                continue
            if stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    links[key] = name
                info.type = tarfile.REGTYPE
                info.size = st.st_size
                with open(path, "rb") as f:
                    tar.addfile(info, f)
                continue
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            else:
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                links[key] = name
            tar.addfile(info)
    return f"sha256:{writer.sha256.hexdigest()}"


def files_tar(files: dict[str, tuple[bytes, int]], out: IO[bytes], mtime: int = 0) -> str:
    """Write a layer tar holding exactly `files` (absolute path -> (content, mode)), owned by root,
    with their parent directories (0755); returns the diff_id, as `layer_tar` does."""
    entries: dict[str, tuple[bytes, int] | None] = {}
    for unsafe_path, (data, mode) in files.items():
        parts = [p for p in unsafe_path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise InvalidArgument(f"files_tar: bad path {unsafe_path!r}")
        for i in range(1, len(parts)):
            if entries.setdefault("/".join(parts[:i]), None) is not None:
                raise InvalidArgument(f"files_tar: {unsafe_path!r} is under a file")
        entries["/".join(parts)] = (data, mode)
    with _tar_writer(out) as (tar, writer):
        # Sorting the split paths gives depth-first order with sorted siblings, as _walk does.
        for name in sorted(entries, key=lambda n: [os.fsencode(p) for p in n.split("/")]):
            content = entries[name]
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = mtime
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data, mode = content
                info.type, info.mode, info.size = tarfile.REGTYPE, mode & 0o7777, len(data)
                tar.addfile(info, io.BytesIO(data))
    return f"sha256:{writer.sha256.hexdigest()}"
