"""Process handling of the managed server with a stand-in ``sglang.launch_server`` (no SGLang needed):
healthy start, death with log lines, startup timeout, SIGTERM then SIGKILL of the whole group."""
from __future__ import annotations

import os
import sys
import textwrap
import time

import httpx
import pytest

from verl_ext_eval.backends.managed_server import LaunchSpec, ManagedServer, ServerLaunchError, port_is_free

FAKE = textwrap.dedent('''
    import argparse, os, signal, subprocess, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    p = argparse.ArgumentParser()
    p.add_argument("--model-path"); p.add_argument("--host"); p.add_argument("--port", type=int)
    p.add_argument("--device"); p.add_argument("--attention-backend"); p.add_argument("--max-total-tokens")
    a = p.parse_args()
    mode = os.environ.get("FAKE_MODE", "ok")
    print("fake sglang", " ".join(sys.argv[1:]), "offline=" + os.environ.get("HF_HUB_OFFLINE", ""), flush=True)
    if mode == "die":
        print("RuntimeError: boom, no kernel for this device", flush=True)
        sys.exit(3)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # a child in the same process group, like SGLang's scheduler
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.environ["FAKE_CHILD_PID"], "w") as f:
        f.write(str(child.pid))
    if mode == "never":
        time.sleep(600)
    class H(BaseHTTPRequestHandler):
        def log_message(self, *args): pass
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404); self.end_headers()
    HTTPServer((a.host, a.port), H).serve_forever()
''')


@pytest.fixture
def fake_sglang(tmp_path):
    pkg = tmp_path / "fake" / "sglang"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "launch_server.py").write_text(FAKE)
    model = tmp_path / "model"
    model.mkdir()

    def spec(mode: str, **kw) -> LaunchSpec:
        env = {"PYTHONPATH": str(tmp_path / "fake"), "FAKE_MODE": mode, "FAKE_CHILD_PID": str(tmp_path / "child.pid")}
        return LaunchSpec(model_path=str(model), python=sys.executable, env=env, log_path=str(tmp_path / "server.log"),
                          **kw)

    spec.child_pid = lambda: int((tmp_path / "child.pid").read_text())
    return spec


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): check its state
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_healthy_then_clean_shutdown(fake_sglang):
    server = ManagedServer(fake_sglang("ok", startup_timeout_s=30))
    with server:
        assert httpx.get(f"{server.base_url}/health").status_code == 200
        log = server.log_path.read_text()
        assert "--device cpu --attention-backend torch_native --max-total-tokens 8192" in log
        assert "--host 127.0.0.1" in log and "offline=1" in log
        child = fake_sglang.child_pid()
        assert _alive(child)
    assert port_is_free(server.port)
    assert not _alive(child)  # the whole process group is gone
    server.close()  # idempotent


def test_gpu_command_has_no_cpu_flags():
    cmd = LaunchSpec(model_path="m", python="py", device="cuda").command(1234)
    assert cmd == ["py", "-m", "sglang.launch_server", "--model-path", "m", "--host", "127.0.0.1", "--port", "1234"]


def test_death_before_healthy_raises_with_log_tail(fake_sglang):
    with pytest.raises(ServerLaunchError, match=r"exited with code 3(.|\n)*boom, no kernel"):
        ManagedServer(fake_sglang("die", startup_timeout_s=30))


def test_startup_timeout_stops_the_process(fake_sglang):
    start = time.monotonic()
    with pytest.raises(ServerLaunchError, match="not healthy after 2 s"):
        ManagedServer(fake_sglang("never", startup_timeout_s=2))
    assert time.monotonic() - start < 30
    assert not _alive(fake_sglang.child_pid())


def test_sigkill_fallback_for_a_server_ignoring_sigterm(fake_sglang):
    server = ManagedServer(fake_sglang("stubborn", startup_timeout_s=30))
    child = fake_sglang.child_pid()
    server.close(timeout_s=1.0)
    assert server.proc.poll() is not None and not _alive(child) and port_is_free(server.port)


def test_refuses_non_loopback_and_missing_paths(tmp_path):
    with pytest.raises(ServerLaunchError, match="loopback only"):
        ManagedServer(LaunchSpec(model_path=str(tmp_path), python=sys.executable, host="0.0.0.0"))
    with pytest.raises(ServerLaunchError, match="sglang_cpu_venv.sh"):
        ManagedServer(LaunchSpec(model_path=str(tmp_path), python=str(tmp_path / "nope" / "python")))
    with pytest.raises(ServerLaunchError, match="model path"):
        ManagedServer(LaunchSpec(model_path=str(tmp_path / "none"), python=sys.executable))
