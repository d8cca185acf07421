#!/bin/bash
# Run one command in a throwaway QEMU VM whose kernel has only cgroup v2 (cgroup_no_v1=all), and
# exit with the command's exit code. Used to test pallet.cgroups' v2 driver on a v1 host:
#
#   tests/v2vm/run.sh -- .venv/bin/python -m pytest -q tests/integration/cgroups
#
# The guest boots Debian's stock kernel (/boot/vmlinuz-*-amd64) with a busybox initramfs, mounts
# the HOST's / read-only over virtio-9p as its root (so python, the venv, coreutils and
# /lib/modules are the host's), tmpfs on /tmp /run /var/tmp, and the project directory
# read-write at the same path; the command runs there as root with /sys/fs/cgroup the v2 root.
# Same approach as ../shared/tools/cgroup2-vm.sh.
#
# Options: -s DIR (shared dir, default: the project root), -m MB (memory, 1024), -c CPUS (2),
#          -t SECONDS (kill the VM after, 900).
# Environment: KVER (kernel version), ACCEL=kvm on a host with real VMX/SVM (default tcg: here
#              /dev/kvm is PVM-only and a stock kernel hangs under it), WORK (initramfs cache dir).
# Needs: qemu-system-x86 linux-image-amd64 busybox-static cpio (Debian packages).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SHARE=$(cd "$HERE/../.." && pwd)
MEM=1024
CPUS=2
TIMEOUT=900
while [ $# -gt 0 ]; do
  case $1 in
    -s) SHARE=$(realpath "$2"); shift 2 ;;
    -m) MEM=$2; shift 2 ;;
    -c) CPUS=$2; shift 2 ;;
    -t) TIMEOUT=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || set -- cat /sys/fs/cgroup/cgroup.controllers

KVER=${KVER:-$(ls /lib/modules | grep -E '^[0-9].*-amd64$' | sort -V | tail -1)}
KERNEL=/boot/vmlinuz-$KVER
[ -r "$KERNEL" ] || { echo "run.sh: no $KERNEL (apt-get install linux-image-amd64)" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "run.sh: qemu-system-x86_64 missing" >&2; exit 2; }
ACCEL=${ACCEL:-tcg}
WORK=${WORK:-/tmp/pallet-v2vm}
mkdir -p "$WORK"

# The init script; the initramfs is rebuilt when it or the kernel changes.
INIT=$(cat <<'INITEOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
for m in $(cat /modorder); do insmod /lib/modules/$m; done
arg() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" /proc/cmdline; }
SHARE=$(arg vmshare); SCRIPT=$(arg vmscript)
O=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o $O,ro,cache=loose hostroot /newroot
for d in tmp run var/tmp; do mount -t tmpfs -o mode=1777 tmpfs /newroot/$d; done
# The share may sit under /tmp, which is a fresh tmpfs in the guest: make its mount point.
mkdir -p /newroot$SHARE
mount -t 9p -o $O,cache=none share /newroot$SHARE
mount --move /proc /newroot/proc; mount --move /sys /newroot/sys; mount --move /dev /newroot/dev
mount -t cgroup2 -o nsdelegate cgroup2 /newroot/sys/fs/cgroup
mkdir -p /newroot/dev/pts /newroot/dev/shm /newroot/dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm; mount -t mqueue mqueue /newroot/dev/mqueue
ip link set lo up 2>/dev/null
# switch_root, not chroot: the host root must become the root of the mount namespace, or a
# setns(CLONE_NEWNS) into a container (pallet-runtime exec) lands in the initramfs.
exec switch_root /newroot /bin/sh -c "/bin/bash $SHARE/$SCRIPT; echo \$? > $SHARE/$SCRIPT.rc; sync; /bin/busybox poweroff -f"
INITEOF
)
STAMP=$( (echo "$KVER"; echo "$INIT") | md5sum | cut -c1-12)
INITRD=$WORK/initrd-$KVER-$STAMP.cpio.gz
if [ ! -f "$INITRD" ]; then
  R=$(mktemp -d "$WORK/root.XXXXXX")
  mkdir -p "$R"/{bin,proc,sys,dev,newroot,lib/modules}
  cp /bin/busybox "$R/bin/busybox"
  for m in virtio_pci 9pnet_virtio 9p; do modprobe -S "$KVER" --show-depends $m; done |
    awk '/^insmod/{print $2}' | awk '!s[$0]++' > "$R/modorder"
  while read -r ko; do cp "$ko" "$R/lib/modules/"; done < "$R/modorder"
  sed -i 's|.*/||' "$R/modorder"
  printf '%s\n' "$INIT" > "$R/init"
  chmod +x "$R/init"
  (cd "$R" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$INITRD.tmp") && mv "$INITRD.tmp" "$INITRD"
  rm -rf "$R"
fi

# The command, run from the shared dir; nothing may write outside it: the root is read-only.
SCRIPT=.v2vm-$$.sh
{
  echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp'
  echo 'export PYTHONDONTWRITEBYTECODE=1 PYTEST_ADDOPTS="-p no:cacheprovider ${PYTEST_ADDOPTS:-}"'
  printf 'cd %q || exit 125\n' "$SHARE"
  printf '%q ' "$@"; echo
} > "$SHARE/$SCRIPT"
trap 'rm -f "$SHARE/$SCRIPT" "$SHARE/$SCRIPT.rc"' EXIT

ACCELOPT="-accel tcg,thread=multi -cpu max"
[ "$ACCEL" = kvm ] && ACCELOPT="-enable-kvm -cpu host"
# shellcheck disable=SC2086
timeout "$TIMEOUT" qemu-system-x86_64 $ACCELOPT -m "$MEM" -smp "$CPUS" -nographic -no-reboot \
  -kernel "$KERNEL" -initrd "$INITRD" \
  -append "console=ttyS0 quiet panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 rdinit=/init vmshare=$SHARE vmscript=$SCRIPT" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$SHARE",mount_tag=share,security_model=none,multidevs=remap \
  -nic none </dev/null 2>&1 |
  sed -u -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e '/SeaBIOS\|iPXE\|Booting from ROM\|^$/d' | tr -d '\r' || true
rc=$(cat "$SHARE/$SCRIPT.rc" 2>/dev/null || echo 255)
exit "$rc"
