"""CPU seconds and resident memory of a process, read from /proc (Linux; no psutil needed)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (its threads included)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces: the fields that follow start after its ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def resident_mib(pid: int) -> float:
    """The process's resident set (VmRSS) in MiB; NaN once it has gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def process_usage(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """name -> (CPU seconds so far, resident MiB) for each named process."""
    return {name: (cpu_seconds(pid), resident_mib(pid)) for name, pid in pids.items()}
