"""Process handling of the managed server with a stand-in ``sglang.launch_server`` (no SGLang needed):
healthy start, death with log lines, startup timeout, SIGTERM then SIGKILL of the whole group."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from verl_ext_eval.backends.managed_server import LaunchSpec, ManagedServer, ServerLaunchError, cpu_server_dtype, port_is_free

FAKE = textwrap.dedent('''
    import argparse, json, os, signal, subprocess, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    p = argparse.ArgumentParser()
    p.add_argument("--model-path"); p.add_argument("--host"); p.add_argument("--port", type=int)
    p.add_argument("--device"); p.add_argument("--attention-backend"); p.add_argument("--max-total-tokens")
    p.add_argument("--dtype")
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
            if self.path == "/get_model_info":
                body = json.dumps({"model_path": os.environ.get("FAKE_SERVED") or a.model_path}).encode()
                self.send_response(200); self.end_headers(); self.wfile.write(body)
                return
            self.send_response(200 if self.path == "/health" else 404); self.end_headers()
    HTTPServer((a.host, a.port), H).serve_forever()
''')

# a runner that launches a managed server (FAKE via argv, not SGLang), reports pids, then waits to be killed
RUNNER = textwrap.dedent('''
    import sys, threading, time
    from verl_ext_eval.backends.managed_server import LaunchSpec, ManagedServer
    fake, model, env_path, child_file, in_thread = sys.argv[1:6]
    spec = LaunchSpec(model_path=model, argv=(sys.executable, fake, "--host", "{host}", "--port", "{port}",
                      "--model-path", "{model_path}"), env={"FAKE_CHILD_PID": child_file}, stop_grace_s=2.0)
    box = {}
    if in_thread == "1":
        t = threading.Thread(target=lambda: box.update(server=ManagedServer(spec)))
        t.start(); t.join()  # the launching thread is gone: only the guard's poll can notice the runner
    else:
        box["server"] = ManagedServer(spec)
    print(box["server"].proc.pid, box["server"].port, flush=True)
    time.sleep(600)
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
        assert f"--dtype {cpu_server_dtype()}" in log  # fp32 where the CPU has no native bf16
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


def test_a_server_for_another_model_is_refused(fake_sglang, tmp_path):
    spec = fake_sglang("ok", startup_timeout_s=30)
    spec = LaunchSpec(**{**spec.__dict__, "env": {**spec.env, "FAKE_SERVED": "/models/someone-else"}})
    with pytest.raises(ServerLaunchError, match="serves '/models/someone-else', not the model it was launched with"):
        ManagedServer(spec)
    assert not _alive(fake_sglang.child_pid())  # the refused server was stopped


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("in_thread", ["0", "1"], ids=["main-thread", "other-thread"])
def test_kill_9_of_the_runner_leaves_no_server_behind(tmp_path, in_thread):
    fake, runner = tmp_path / "fake_server.py", tmp_path / "runner.py"
    fake.write_text(FAKE)
    runner.write_text(RUNNER)
    model = tmp_path / "model"
    model.mkdir()
    child_file = tmp_path / "child.pid"
    proc = subprocess.Popen([sys.executable, str(runner), str(fake), str(model), "", str(child_file), in_thread],
                            stdout=subprocess.PIPE, text=True)
    try:
        guard_pid, port = map(int, proc.stdout.readline().split())
        server_child = int(child_file.read_text())
        assert _alive(guard_pid) and _alive(server_child) and not port_is_free(port)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert _gone(server_child, 10.0) and _gone(guard_pid, 10.0)
        deadline = time.monotonic() + 5
        while not port_is_free(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert port_is_free(port)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_server_env_drops_the_launchers_rank_identity():
    """A server launched from a torchrun rank must not join (or wait for) the trainer's process group."""
    from verl_ext_eval.backends.managed_server import server_env

    env = server_env({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                      "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "x", "OMP_NUM_THREADS": "1",
                      "PATH": "/bin", "HF_HOME": "/h"})
    assert env == {"PATH": "/bin", "HF_HOME": "/h"}
