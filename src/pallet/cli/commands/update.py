"""`pallet update`: change the resources (and restart policy) of containers, as `docker update`."""

from __future__ import annotations

import sys

from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from pallet.cli.args import Namespace
    from pallet.cli.main import Context


def update_body(args: argparse.Namespace | Namespace) -> dict[str, Any]:
    from pallet.cli.commands.run import nano_cpus, ram_in_bytes, restart_policy

    body: dict[str, Any] = {}
    for flag, key, conv in (("memory", "Memory", ram_in_bytes), ("memory_reservation", "MemoryReservation",
                                                                 ram_in_bytes),
                            ("kernel_memory", "KernelMemory", ram_in_bytes), ("cpus", "NanoCpus", nano_cpus),
                            ("restart", "RestartPolicy", restart_policy)):
        if getattr(args, flag) is not None:
            body[key] = conv(getattr(args, flag))
    if args.memory_swap is not None:
        body["MemorySwap"] = -1 if args.memory_swap.strip() == "-1" else ram_in_bytes(args.memory_swap)
    for flag, key in (("cpu_shares", "CpuShares"), ("cpu_period", "CpuPeriod"), ("cpu_quota", "CpuQuota"),
                      ("cpu_rt_period", "CpuRealtimePeriod"), ("cpu_rt_runtime", "CpuRealtimeRuntime"),
                      ("cpuset_cpus", "CpusetCpus"), ("cpuset_mems", "CpusetMems"),
                      ("blkio_weight", "BlkioWeight"), ("pids_limit", "PidsLimit")):
        if getattr(args, flag) is not None:
            body[key] = getattr(args, flag)
    return body


def main(ctx: Context, argv: list[str], prog: str = "pallet update") -> int:
    from pallet.cli.commands.container import for_each, parser, path

    p = parser(prog, "Update configuration of one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-m", "--memory", help="Memory limit")
    p.add_argument("--memory-reservation", help="Memory soft limit")
    p.add_argument("--memory-swap", help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
    p.add_argument("--kernel-memory", help="Kernel memory limit (deprecated)")
    p.add_argument("--cpus", help="Number of CPUs")
    p.add_argument("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    p.add_argument("--cpu-period", type=int, help="Limit CPU CFS (Completely Fair Scheduler) period")
    p.add_argument("--cpu-quota", type=int, help="Limit CPU CFS (Completely Fair Scheduler) quota")
    p.add_argument("--cpu-rt-period", type=int, help="Limit the CPU real-time period in microseconds")
    p.add_argument("--cpu-rt-runtime", type=int, help="Limit the CPU real-time runtime in microseconds")
    p.add_argument("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    p.add_argument("--blkio-weight", type=int, help="Block IO (relative weight), between 10 and 1000")
    p.add_argument("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    p.add_argument("--restart", help="Restart policy to apply when a container exits")
    args = p.parse_args(argv)
    body = update_body(args)
    if not body:
        raise InvalidArgument("you must provide one or more flags when using this command")
    client = ctx.client()

    def update(ref: str) -> None:
        result = client.post_json(path(ref, "/update"), body) or {}
        for w in result.get("Warnings") or []:
            print(f"WARNING: {w}", file=sys.stderr)

    return for_each(args.containers, update)
