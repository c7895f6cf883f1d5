"""Runs a server command and takes its whole process group down when the runner that launched it dies.

A runner killed with ``kill -9`` runs no finalizer, and an orphaned SGLang server keeps its GPU and
port until someone notices. ``managed_server`` therefore starts this guard (stdlib only, run by path
so nothing heavy is imported) as the leader of a new process group; the guard starts the server in
that group and, when its parent is gone, SIGTERMs the group, waits ``--grace`` seconds, SIGKILLs it.
"Parent gone" is seen two ways: ``PR_SET_PDEATHSIG`` (Linux; asked for only when the launching thread
is the main thread, because the kernel fires it when the *thread* exits) and a 0.2 s ``getppid`` poll
that works everywhere. A SIGTERM/SIGINT/SIGHUP to the guard does the same group shutdown. When the
server exits on its own the guard exits with its code, so the launcher sees the real failure.

    python server_guard.py --parent PID [--pdeathsig] [--grace S] -- CMD ARGS...
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_S = 0.2


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent (thread) dies; Linux only."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _stop_group(child: subprocess.Popen, grace_s: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group-wide SIGTERM below reaches us too
    try:
        os.killpg(0, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(0, signal.SIGKILL)  # whatever is left, the guard last


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("server_guard: usage: --parent PID [--pdeathsig] [--grace S] -- CMD...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="server_guard")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--pdeathsig", action="store_true")
    parser.add_argument("--grace", type=float, default=20.0)
    args = parser.parse_args(argv[:split])
    cmd = argv[split + 1:]
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))
    if args.pdeathsig:
        set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != args.parent:  # died before we could watch it
        return 1
    child = subprocess.Popen(cmd)  # same process group as the guard
    while True:
        code = child.poll()
        if code is not None:
            _stop_group_quietly()
            return code
        if stopping or os.getppid() != args.parent:
            _stop_group(child, args.grace)
            return 1
        time.sleep(POLL_S)


def _stop_group_quietly() -> None:
    """The server exited by itself: end leftovers of the group (its helpers), not the guard."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(0, signal.SIGTERM)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    sys.exit(main())
