"""``verl-ext submit``: option handling (fast) and real jobs on a local Ray head bound to 127.0.0.1 (slow).

The cluster is ``ray start --head --block`` on free ports with its own temp dir; it is stopped by the
PIDs it started (never ``ray stop``, which matches processes by name across the machine).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.launch.submit import SubmitError, build_request, exit_code, make_parser, parse_env

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def request(*argv: str, environ: dict | None = None):
    return build_request(make_parser().parse_args(list(argv)), environ or {})


# ---------------------------------------------------------------- options (fast)


def test_command_after_double_dash_is_shell_quoted_unchanged(tmp_path):
    r = request("--working-dir", str(tmp_path), "--", "verl-ext", "train", "trainer.logger=[console]",
                "data.prompt_template=Q: {prompt} A:", "--dry-run")
    assert r.entrypoint == "verl-ext train 'trainer.logger=[console]' 'data.prompt_template=Q: {prompt} A:' --dry-run"
    assert r.runtime_env == {"working_dir": str(tmp_path.resolve())}


def test_address_precedence():
    assert request("--", "true").address == "http://127.0.0.1:8265"
    assert request("--", "true", environ={"RAY_ADDRESS": "http://10.0.0.1:8265"}).address == "http://10.0.0.1:8265"
    assert request("--address", "http://h:1", "--", "true", environ={"RAY_ADDRESS": "http://x:2"}).address == "http://h:1"


def test_env_vars_merge_json_then_flags():
    r = request("--runtime-env-json", json.dumps({"env_vars": {"A": "json", "B": "b"}, "pip": ["x"]}),
                "--env", "A=flag", "--env", "HF_HUB_OFFLINE", "--", "true", environ={"HF_HUB_OFFLINE": "1"})
    assert r.runtime_env == {"env_vars": {"A": "flag", "B": "b", "HF_HUB_OFFLINE": "1"}, "pip": ["x"]}
    assert r.submit_kwargs()["runtime_env"] == r.runtime_env
    assert "entrypoint_num_gpus" not in r.submit_kwargs()
    assert request("--entrypoint-num-gpus", "8", "--", "true").submit_kwargs()["entrypoint_num_gpus"] == 8


@pytest.mark.parametrize("argv, needle", [
    (["--"], "no command"),
    (["--working-dir", "/no/such/dir", "--", "true"], "--working-dir"),
    (["--runtime-env-json", "[1]", "--", "true"], "JSON object"),
    (["--runtime-env-json", "{bad", "--", "true"], "not valid JSON"),
    (["--runtime-env-json", '{"env_vars": {"N": 1}}', "--", "true"], "must be strings"),
    (["--env", "UNSET_IN_SHELL", "--", "true"], "not set in this shell"),
])
def test_bad_options_name_the_option(argv, needle):
    with pytest.raises(SubmitError, match=needle):
        request(*argv)


def test_parse_env_keeps_equals_in_value():
    assert parse_env(["A=b=c", "E="], {}) == {"A": "b=c", "E": ""}


def test_exit_codes():
    assert exit_code("SUCCEEDED", None) == 0
    assert exit_code("FAILED", 3) == 3
    assert exit_code("FAILED", None) == 1
    assert exit_code("FAILED", 0) == 1  # failed for Ray's reasons (runtime env) with a clean driver
    assert exit_code("STOPPED", None) == 130


def test_unreachable_address_is_a_one_line_error(capsys):
    from verl_ext.launch.submit import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    assert main(["--address", f"http://127.0.0.1:{port}", "--", "true"]) == 2
    assert "cannot reach the Ray dashboard" in capsys.readouterr().err


# ---------------------------------------------------------------- a real local cluster (slow)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _ours(temp_dir: str) -> list:
    """Processes of this user whose command line names this cluster's own temp dir."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline", "uids"]):
        try:
            if p.info["uids"] and p.info["uids"].real == os.getuid() and any(temp_dir in a for a in p.info["cmdline"] or []):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head listening only on 127.0.0.1; yields (dashboard address, `ray start` pid, temp dir)."""
    from ray.job_submission import JobSubmissionClient

    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    dash = _free_port()
    base = random.Random(os.getpid()).randrange(20000, 29000)
    cmd = [
        str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
        f"--port={_free_port()}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
        f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
        f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
        f"--metrics-export-port={_free_port()}", f"--min-worker-port={base}", f"--max-worker-port={base + 200}",
        "--num-cpus=2", "--num-gpus=0", "--object-store-memory=100000000", f"--temp-dir={temp_dir}",
        "--disable-usage-stats", "--include-dashboard=true",
    ]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(Path(temp_dir) / "ray_start.log", "wb")
    head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 90
        while True:
            if head.poll() is not None:
                raise AssertionError(f"ray start exited {head.returncode}: {(Path(temp_dir) / 'ray_start.log').read_text()[-3000:]}")
            try:
                JobSubmissionClient(address)
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        yield address, head.pid, temp_dir
    finally:
        started = _descendants(head.pid) + _ours(temp_dir)
        head.send_signal(signal.SIGTERM)  # --block: ray start tears down what it started
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        import psutil

        for p in started:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_address(ray_cluster) -> str:
    return ray_cluster[0]


def submit(address: str, *argv: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verl_ext.launch.submit", "--address", address, *argv],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.mark.slow
@pytest.mark.serial
def test_jobs_on_local_cluster(ray_address, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    marker = f"marker-{random.Random(7).randrange(10**9)}"
    (wd / "marker.txt").write_text(marker)  # only the uploaded working dir has it
    ok = submit(ray_address, "--working-dir", str(wd), "--env", "VERL_EXT_TEST_VAR=from-env", "--",
                sys.executable, "-c",
                "import os; print(open('marker.txt').read(), os.environ['VERL_EXT_TEST_VAR'])")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{marker} from-env" in ok.stdout
    assert "SUCCEEDED" in ok.stderr

    bad = submit(ray_address, "--working-dir", str(wd), "--", sys.executable, "-c",
                 "import sys; print('about to fail'); sys.exit(3)")
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert "about to fail" in bad.stdout and "FAILED" in bad.stderr

    from ray.job_submission import JobSubmissionClient

    detached = submit(ray_address, "--no-wait", "--", sys.executable, "-c", "print('detached job ran')")
    assert detached.returncode == 0, detached.stderr
    job_id = detached.stdout.strip().splitlines()[-1]
    client = JobSubmissionClient(ray_address)
    deadline = time.time() + 90
    while not client.get_job_status(job_id).is_terminal() and time.time() < deadline:
        time.sleep(0.5)
    assert client.get_job_status(job_id).value == "SUCCEEDED"
    assert "detached job ran" in client.get_job_logs(job_id)


@pytest.mark.slow
@pytest.mark.serial
def test_dry_run_training_job(ray_address, tmp_path, tiny_model_dir):
    wd = tmp_path / "wd"
    wd.mkdir()
    rows = [{"messages": [{"role": "user", "content": f"What is {i}+{i}?"},
                          {"role": "assistant", "content": f"{2 * i}"}]} for i in range(8)]
    pq.write_table(pa.Table.from_pylist(rows), wd / "train.parquet")
    proc = submit(ray_address, "--working-dir", str(wd), "--env", "HF_HUB_OFFLINE=1", "--",
                  sys.executable, "-m", "verl_ext.launch.train", "--dry-run", f"model.path={tiny_model_dir}",
                  "data.train_files=train.parquet", "data.train_batch_size=4", "data.max_length=128",
                  "trainer.n_gpus_per_node=2", "trainer.logger=[console]", "trainer.default_local_dir=ckpt")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "preflight: ok" in proc.stdout
    assert "rows              8" in proc.stdout  # the plan, from the file in the uploaded working dir
    assert "launch: " in proc.stdout


@pytest.mark.slow
@pytest.mark.serial
def test_ctrl_c_stops_the_job(ray_address, tmp_path):
    from ray.job_submission import JobSubmissionClient

    job_id = f"verl-ext-test-stop-{os.getpid()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "verl_ext.launch.submit", "--address", ray_address, "--submission-id", job_id, "--",
         sys.executable, "-u", "-c", "import time; print('started', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.time() + 90
        for line in proc.stdout:
            if "started" in line or time.time() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "stopping job" in err
    assert JobSubmissionClient(ray_address).get_job_status(job_id).value == "STOPPED"


def _loopback(ip: str) -> bool:
    import ipaddress

    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or addr).is_loopback


def test_loopback_check():
    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("::ffff:127.0.0.1")
    assert not _loopback("0.0.0.0") and not _loopback("::") and not _loopback("10.1.2.3")


@pytest.mark.slow
@pytest.mark.serial
def test_cluster_listens_only_on_loopback(ray_cluster):
    import psutil

    _, pid, temp_dir = ray_cluster
    listening = set()
    for p in _descendants(pid) + _ours(temp_dir):
        try:
            conns = p.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening |= {(c.laddr.ip, c.laddr.port, p.name()) for c in conns if c.status == psutil.CONN_LISTEN}
    assert listening, "found no listening sockets: the check would prove nothing"
    exposed = sorted(x for x in listening if not _loopback(x[0]))
    assert not exposed, f"listening beyond loopback: {exposed}"
