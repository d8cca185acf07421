"""The built-in base images: their root filesystems, layer tars and configs, made without a registry.

- hello-world: one layer holding /hello, a static ELF program written by `hello.hello_elf`;
- busybox: the host's busybox-static and its applet links (`rootfs.busybox_rootfs`);
- debian:<suite>: made by mmdebstrap or debootstrap from the Debian archive (`rootfs.debian_rootfs`).

This package only produces content (directories, tars, config dicts); storing it as an image
(blobs, manifest, name) is the content store's and metadata's job.
"""

from pallet.image.builtin.hello import hello_config, hello_elf, hello_files
from pallet.image.builtin.rootfs import (
    busybox_rootfs,
    debian_rootfs,
    files_tar,
    history_entry,
    image_config,
    layer_tar,
    oci_platform,
)

__all__ = [
    "busybox_rootfs",
    "debian_rootfs",
    "files_tar",
    "hello_config",
    "hello_elf",
    "hello_files",
    "history_entry",
    "image_config",
    "layer_tar",
    "oci_platform",
]
