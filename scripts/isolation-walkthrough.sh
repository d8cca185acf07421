#!/bin/bash
# The isolation walkthrough of docs/walkthrough.md: starts a private palletd, runs each check,
# prints every command ("$ ...") and its real output, then removes what it made (containers,
# volumes, the IPC segment, cgroups under /pallet-walk, the temporary root). Run as root from a
# checkout after ./setup.sh.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
export PYTHONPATH=${WALK_SRC:-$PWD/src}
palletd() { "$PY" -m pallet.daemon.main "$@"; }
pallet() { "$PY" -m pallet.cli.main "$@"; }
export -f palletd pallet
export PY
W=$(mktemp -d /tmp/pw.XXXXXX)
chmod 711 "$W"   # the containers' roots (unprivileged host uids) traverse it to their rootfs
export PALLET_HOST=unix://$W/pallet.sock
run() { echo "\$ $*"; bash -c "$*" 2>&1; echo; }

palletd --data-root "$W/data" --exec-root "$W/exec" -H "$PALLET_HOST" --cgroup-parent /pallet-walk \
    >"$W/palletd.log" 2>&1 &
PD=$!
for _ in $(seq 100); do [ -S "$W/pallet.sock" ] && break; sleep 0.1; done
pallet image bootstrap busybox >/dev/null

echo "=== ps"
run "ps aux | wc -l"
run "pallet run --rm busybox ps aux | wc -l"
run "pallet run --rm busybox ps aux"
echo "=== mounts"
run "wc -l /proc/mounts"
run "pallet run --rm busybox wc -l /proc/mounts"
run "pallet run --rm busybox cat /proc/mounts"
echo "=== net"
run "ip -o link | wc -l"
run "pallet run --rm busybox ip addr"
echo "=== hostname"
run "hostname"
run "pallet run --rm busybox hostname"
run "pallet run --rm --hostname demo busybox hostname"
echo "=== ipcs"
SHM=$(ipcmk -M 4096 | awk '{print $NF}')
echo "\$ ipcmk -M 4096"; echo "Shared memory id: $SHM"; echo
run "ipcs -m"
run "cat /proc/sysvipc/shm"
run "pallet run --rm busybox cat /proc/sysvipc/shm"
ipcrm -m "$SHM"
echo "=== userns"
run "pallet run -d --name u1 --userns=auto -v u1vol:/data busybox sh -c 'touch /data/f /made-by-u1; exec sleep 600'"
run "pallet run -d --name u2 --userns=auto -v u2vol:/data busybox sh -c 'touch /data/f /made-by-u2; exec sleep 600'"
sleep 1
run "pallet inspect -f '{{.HostConfig.UsernsMode}} {{json .HostConfig.IDMappings}}' u1 u2"
P1=$(pallet inspect -f '{{.State.Pid}}' u1)
P2=$(pallet inspect -f '{{.State.Pid}}' u2)
run "ps -o user,pid,cmd -p $P1,$P2"
run "cat /proc/$P1/uid_map /proc/$P2/uid_map"
run "ls -ln \$(pallet volume inspect -f '{{.Mountpoint}}' u1vol) \$(pallet volume inspect -f '{{.Mountpoint}}' u2vol)"
run "ls -ln \$(pallet inspect -f '{{.GraphDriver.Data.UpperDir}}' u1) \$(pallet inspect -f '{{.GraphDriver.Data.UpperDir}}' u2)"
run "pallet exec u1 sh -c 'id; ls -ln /made-by-u1 /bin/busybox'"
run "setpriv --reuid=10000 --regid=10000 --clear-groups kill -0 $P2"
run "setpriv --reuid=10000 --regid=10000 --clear-groups cat /proc/$P2/environ"
run "setpriv --reuid=10000 --regid=10000 --clear-groups kill -0 $P1 && echo 'its own: allowed'"
run "pallet exec u1 kill -0 $P2"
run "pallet rm -f u1 u2 >/dev/null; pallet run --rm --userns=auto busybox cat /proc/self/uid_map"
echo "=== cgroups"
run "pallet run -d --name busy --memory 128m busybox sh -c 'head -c 33554432 /dev/zero > /dev/shm/fill; while :; do :; done'"
sleep 2
CID=$(pallet inspect -f '{{.Id}}' busy)
CG=/sys/fs/cgroup
run "cat $CG/memory/pallet-walk/$CID/memory.usage_in_bytes $CG/memory/pallet-walk/$CID/memory.limit_in_bytes"
run "grep -E '^(cache|rss|shmem|mapped_file) ' $CG/memory/pallet-walk/$CID/memory.stat"
run "cat $CG/cpuacct/pallet-walk/$CID/cpuacct.usage; sleep 1; cat $CG/cpuacct/pallet-walk/$CID/cpuacct.usage"
run "cat $CG/cpuacct/pallet-walk/$CID/cpuacct.stat"
run "cat $CG/pids/pallet-walk/$CID/pids.current $CG/cpu/pallet-walk/$CID/tasks"
run "pallet stats --no-stream busy"

pallet rm -f busy >/dev/null
pallet volume rm u1vol u2vol >/dev/null 2>&1
kill "$PD"; wait "$PD"
for h in /sys/fs/cgroup/*/pallet-walk; do rmdir "$h"/* "$h" 2>/dev/null; done
rm -rf "$W"
