"""Launch an SGLang server as a child process on 127.0.0.1, wait for ``/health``, stop it cleanly.

The server runs with the SGLang venv's python (``scripts/sglang_cpu_venv.sh`` builds one for CPU),
in its own process group, ``HF_HUB_OFFLINE=1``, logging to a file, under ``server_guard`` (which
takes the group down when this process dies, even by ``kill -9``: no orphan holding a GPU). If it
dies or is not healthy in time, the error carries the last log lines. Once healthy, it must say it
serves the model it was launched with (``/get_model_info``, else ``/v1/models``): a stale server
on a reused port is an error, not silently wrong numbers. ``close()`` sends SIGTERM to the whole
group, waits, then SIGKILLs; a finalizer does the same if the owner forgets.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServerLaunchError(RuntimeError):
    """The server process exited or never became healthy; the message ends with its last log lines."""


def default_sglang_python() -> Path:
    """``$SGLANG_VENV/bin/python``, else the repo's ``.cache/sglang-venv/bin/python`` (may not exist)."""
    venv = os.environ.get("SGLANG_VENV") or str(REPO_ROOT / ".cache" / "sglang-venv")
    return Path(venv) / "bin" / "python"


# torchrun's identity of the launching process: a server that inherits RANK/WORLD_SIZE/MASTER_* joins
# (or waits forever for) the trainer's process group instead of starting its own
_LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                 "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS")


def server_env(environ) -> dict:
    """The environment a managed server starts with: the caller's, less torchrun's per-rank keys."""
    return {k: v for k, v in environ.items() if k not in _LAUNCHER_ENV and not k.startswith("TORCHELASTIC_")}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex((host, port)) != 0


def cpu_server_dtype() -> str:
    """SGLang's ``--dtype`` on CPU: ``auto`` (the checkpoint's, bf16 for most) where the CPU multiplies
    bf16 natively, else ``float32`` (bf16 there runs through torch's scalar fallback)."""
    from verl_ext.seam.precision import cpu_bf16

    return "auto" if cpu_bf16().native else "float32"


@dataclass(frozen=True)
class LaunchSpec:
    """How to start ``python -m sglang.launch_server``. ``device="cpu"`` adds the flags SGLang needs
    on CPU (torch_native attention, a bounded KV cache: without it SGLang reserves ~15 GB)."""

    model_path: str
    python: str = ""  # "" -> default_sglang_python()
    host: str = "127.0.0.1"
    port: int | None = None  # None -> a free port
    device: str = "cpu"
    max_total_tokens: int | None = 8192  # CPU only unless set for GPU too
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: float = 300.0
    log_path: str | None = None  # None -> a temp file
    env: dict = field(default_factory=dict)
    # replaces the SGLang command (another server, tests); {host} {port} {model_path} are filled in
    argv: tuple[str, ...] = ()
    stop_grace_s: float = 20.0  # how long the guard waits after SIGTERM before SIGKILL (runner gone)

    def command(self, port: int) -> list[str]:
        if self.argv:
            return [a.format(host=self.host, port=port, model_path=self.model_path) for a in self.argv]
        python = self.python or str(default_sglang_python())
        cmd = [python, "-m", "sglang.launch_server", "--model-path", str(self.model_path),
               "--host", self.host, "--port", str(port)]
        if self.device == "cpu":
            cmd += ["--device", "cpu", "--attention-backend", "torch_native"]
            if self.max_total_tokens:
                cmd += ["--max-total-tokens", str(self.max_total_tokens)]
            if "--dtype" not in self.extra_args:
                cmd += ["--dtype", cpu_server_dtype()]
        elif self.max_total_tokens and self.max_total_tokens != LaunchSpec.max_total_tokens:
            cmd += ["--max-total-tokens", str(self.max_total_tokens)]
        return cmd + list(self.extra_args)


def _group_gone(pgid: int, timeout_s: float) -> bool:
    """Wait until no process of group ``pgid`` is left (zombies awaiting their reaper count as gone
    only once reaped; the wait is bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _stop_group(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM the launcher's process group, wait for it (SGLang's scheduler and detokenizer
    children included), SIGKILL whatever is left after ``timeout_s``."""
    if proc.poll() is not None and _group_gone(proc.pid, 0):
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    if not _group_gone(proc.pid, timeout_s if proc.poll() is not None else 0):
        logger.warning("server group %d still running %.0f s after SIGTERM; sending SIGKILL", proc.pid, timeout_s)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        _group_gone(proc.pid, 5.0)


class ManagedServer:
    """A running SGLang server; use as a context manager or call ``close()``."""

    def __init__(self, spec: LaunchSpec):
        if spec.host not in ("127.0.0.1", "localhost", "::1"):
            raise ServerLaunchError(f"managed servers bind to loopback only, not {spec.host!r}")
        python = Path(spec.python or default_sglang_python())
        if not spec.argv and not python.exists():
            raise ServerLaunchError(
                f"SGLang python {python} does not exist; build the CPU venv with "
                f"`bash scripts/sglang_cpu_venv.sh` or pass python=/path/to/venv/bin/python"
            )
        if not Path(spec.model_path).exists():
            raise ServerLaunchError(f"model path {spec.model_path} does not exist")
        self.spec = spec
        self.port = spec.port or free_port(spec.host)
        self.base_url = f"http://{spec.host}:{self.port}"
        if spec.log_path:
            self.log_path = Path(spec.log_path)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        else:
            fd, name = tempfile.mkstemp(prefix="sglang-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        cmd = spec.command(self.port)
        logger.info("launching %s (log: %s)", " ".join(cmd), self.log_path)
        env = {**server_env(os.environ), "HF_HUB_OFFLINE": "1", **spec.env}
        guard = [sys.executable, str(Path(__file__).with_name("server_guard.py")), "--parent", str(os.getpid()),
                 "--grace", str(spec.stop_grace_s)]
        if threading.current_thread() is threading.main_thread():
            guard.append("--pdeathsig")  # fires when the launching *thread* exits: main thread only
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*guard, "--", *cmd], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self._finalizer = weakref.finalize(self, _stop_group, self.proc)
        try:
            self.wait_healthy(spec.startup_timeout_s)
            self.check_model()
        except BaseException:
            self.close()
            raise

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_healthy(self, timeout_s: float) -> None:
        import httpx

        start = time.monotonic()
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerLaunchError(
                    f"SGLang server exited with code {code} before it was healthy; log {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.base_url}/health", timeout=5.0).status_code == 200:
                    logger.info("SGLang server healthy at %s after %.1f s", self.base_url, time.monotonic() - start)
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() - start > timeout_s:
                raise ServerLaunchError(
                    f"SGLang server not healthy after {timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(1.0)

    def served_model(self) -> str | None:
        """The model path the server reports (``/get_model_info``), else the ids ``/v1/models``
        lists joined by commas; None when it answers neither."""
        import httpx

        try:
            r = httpx.get(f"{self.base_url}/get_model_info", timeout=10.0)
            if r.status_code == 200 and isinstance(r.json(), dict) and r.json().get("model_path"):
                return str(r.json()["model_path"])
            r = httpx.get(f"{self.base_url}/v1/models", timeout=10.0)
            if r.status_code == 200:
                ids = [str(m.get("id")) for m in (r.json().get("data") or []) if m.get("id")]
                return ",".join(ids) or None
        except (httpx.HTTPError, ValueError):
            return None
        return None

    def check_model(self) -> None:
        """Refuse a server that does not serve ``spec.model_path`` (e.g. another one on the port)."""
        served = self.served_model()
        want = Path(self.spec.model_path).resolve()
        names = [n for n in (served or "").split(",") if n]
        if any(n == self.spec.model_path or Path(n).resolve() == want for n in names):
            return
        what = f"serves {served!r}" if served else "answers neither /get_model_info nor /v1/models"
        raise ServerLaunchError(f"server at {self.base_url} {what}, not the model it was launched with "
                                f"({self.spec.model_path}); is another server on port {self.port}? log {self.log_path}")

    def close(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the process group, wait, SIGKILL what is left. Idempotent."""
        if self._finalizer.alive:
            self._finalizer.detach()
            _stop_group(self.proc, timeout_s)
            logger.info("SGLang server on port %d stopped", self.port)

    def __enter__(self) -> "ManagedServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def launch(model_path: str | Path, python: str | Path | None = None, **kwargs) -> ManagedServer:
    """Start a server for ``model_path`` and return it once ``/health`` answers."""
    return ManagedServer(LaunchSpec(model_path=str(model_path), python=str(python or ""), **kwargs))

