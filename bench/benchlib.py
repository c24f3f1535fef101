"""Helpers shared by the benchmark scripts: /proc readings and child-process hygiene."""

import os
import signal
import subprocess
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOP_TIMEOUT_S = 10.0


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


def stop_processes(procs, timeout=STOP_TIMEOUT_S):
    """SIGTERM every still-running Popen (by PID), bounded wait, then SIGKILL the rest."""
    live = [p for p in procs if p is not None and p.poll() is None]
    for p in live:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for p in live:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in live:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


def default_binary():
    """$DM_BIN, else the release build if there is one, else the debug build."""
    env = os.environ.get("DM_BIN")
    if env:
        return env
    release = os.path.join(REPO_ROOT, ".build", "release", "data-mesher")
    if os.path.isfile(release) and os.access(release, os.X_OK):
        return release
    return os.path.join(REPO_ROOT, ".build", "debug", "data-mesher")


def shield_cleanup():
    """Ignores SIGTERM, SIGHUP and SIGINT from here on: a bench's cleanup (stopping what it
    started, removing its directory) is bounded and must not be interrupted halfway."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
