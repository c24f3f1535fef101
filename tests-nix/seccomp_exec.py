#!/usr/bin/python3
"""Runs a command under the system-call filter of contrib/systemd/data-mesher.service.

    seccomp_exec.py -- COMMAND [ARGS...]

Without a running systemd we cannot start the unit itself, so this rebuilds the two filters
systemd would install for it and then execs COMMAND:

  SystemCallFilter=@system-service   every system call of the group (expanded with
                                     `systemd-analyze syscall-filter`), others fail with EPERM
                                     (SystemCallErrorNumber=EPERM)
  RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
                                     socket() with any other family fails with EAFNOSUPPORT

Needs python3-seccomp (Debian) and systemd-analyze. Used by tests-nix/nix_test.sh.
"""

import errno
import os
import socket
import subprocess
import sys

import seccomp

GROUP = "@system-service"
FAMILIES = [socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, socket.AF_NETLINK]


def expand(group: str, seen: set[str]) -> set[str]:
    """System call names of a systemd filter group, nested groups included."""
    if group in seen:
        return set()
    seen.add(group)
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager", group],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names: set[str] = set()
    for line in text.splitlines()[1:]:  # the first line is the group's own name
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        if word.startswith("@"):
            names |= expand(word, seen)
        else:
            names.add(word)
    return names


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: seccomp_exec.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    allowed = expand(GROUP, set())
    flt = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    unknown = 0
    for name in sorted(allowed):
        if name == "socket":
            continue
        try:
            flt.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            unknown += 1  # not a system call on this architecture
    for family in FAMILIES:
        flt.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, family))
    # Every other family: EAFNOSUPPORT, as systemd answers.
    flt.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.GT, max(FAMILIES)))
    for family in range(0, max(FAMILIES)):
        if family not in FAMILIES:
            flt.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family))
    print(
        f"seccomp_exec: {len(allowed) - unknown} system calls of {GROUP} allowed, "
        f"socket() families {[int(f) for f in FAMILIES]}",
        file=sys.stderr,
        flush=True,
    )
    flt.load()
    os.execvp(args[0], args)
    return 127


if __name__ == "__main__":
    sys.exit(main())
