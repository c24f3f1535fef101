"""Helpers shared by the benchmark scripts: /proc readings and child-process hygiene."""

import os
import signal


def loadavg1():
    """1-minute load average: other work on the machine skews every number here."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def proc_ticks(pid):
    """utime + stime of a process in clock ticks, or None (same fields as serf_bench.sh)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        return None


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds, or None."""
    ticks = proc_ticks(pid)
    return None if ticks is None else ticks / os.sysconf("SC_CLK_TCK")


def proc_status(pid, field):
    """A kB value (e.g. VmRSS, VmHWM) from /proc/PID/status, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def die_with_parent():
    """In the child: get SIGTERM if this script dies without running its cleanup."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
