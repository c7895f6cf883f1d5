"""``verl-ext submit [options] -- COMMAND...``: run a command as a Ray job, stream its logs, return its status.

``ray job submit`` semantics through Ray's ``JobSubmissionClient``: the working dir is uploaded, the
runtime env (env vars included) applies, the command runs unchanged on the cluster (its Hydra
overrides are shell-quoted, so ``trainer.logger=[console]`` arrives as typed). The exit status is 0
when the job SUCCEEDED, the job's own exit code when it FAILED (1 if Ray does not know it), 130 when
it was stopped. Ctrl-C stops the job (``ray job submit`` would only detach).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
STOPPED_EXIT = 130  # what a shell reports for a command ended by Ctrl-C

EXAMPLE = """examples:
  verl-ext submit --working-dir . --env HF_HUB_OFFLINE=1 -- \\
      verl-ext train model.path=Qwen/Qwen3-1.7B data.train_files=data/train.parquet trainer.n_gpus_per_node=8
  RAY_ADDRESS=http://head-node:8265 verl-ext submit --no-wait --working-dir . -- \\
      python -m verl_ext_eval.textcraft backend.name=sglang backend.model_path=/models/sft episodes=100
  verl-ext submit --working-dir . -- verl-ext train trainer.launcher=ray trainer.nnodes=2 \\
      trainer.n_gpus_per_node=8 model.path=Qwen/Qwen3-1.7B data.train_files=data/train.parquet
      (the job's driver joins the cluster it runs on: Ray sets its RAY_ADDRESS; workers go on every node)

The address is --address, else $RAY_ADDRESS, else http://127.0.0.1:8265 (the dashboard, not the GCS port).
Exit status: 0 SUCCEEDED, the job's exit code when it FAILED, 130 when STOPPED; 2 on a usage or connection error.
"""


class SubmitError(RuntimeError):
    """A bad option value; the message names the option and the fix."""


@dataclass(frozen=True)
class JobRequest:
    """Everything sent to ``JobSubmissionClient.submit_job`` (pure data, built from the options)."""

    address: str
    entrypoint: str
    runtime_env: dict[str, Any] = field(default_factory=dict)
    submission_id: str | None = None
    num_cpus: float | None = None
    num_gpus: float | None = None

    def submit_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"entrypoint": self.entrypoint, "runtime_env": self.runtime_env or None}
        if self.submission_id:
            kwargs["submission_id"] = self.submission_id
        if self.num_cpus is not None:
            kwargs["entrypoint_num_cpus"] = self.num_cpus
        if self.num_gpus is not None:
            kwargs["entrypoint_num_gpus"] = self.num_gpus
        return kwargs


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verl-ext submit",
        description="Submit a command (verl-ext train ..., python -m verl_ext_eval.textcraft ...) as a Ray job, "
        "stream its logs and exit with its status. Ctrl-C stops the job.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--address", help=f"Ray dashboard address (default: $RAY_ADDRESS or {DEFAULT_ADDRESS})")
    p.add_argument("--working-dir", help="local folder uploaded as the job's working dir (honours .gitignore)")
    p.add_argument("--runtime-env-json", help='Ray runtime env as JSON, e.g. \'{"pip": ["x"], "env_vars": {"A": "1"}}\'')
    p.add_argument("--env", action="append", default=[], metavar="KEY[=VALUE]",
                   help="env var for the job (repeatable); KEY alone copies this shell's value")
    p.add_argument("--submission-id", help="job id to use (default: Ray picks one)")
    p.add_argument("--entrypoint-num-cpus", type=float, help="CPUs reserved for the command")
    p.add_argument("--entrypoint-num-gpus", type=float,
                   help="GPUs reserved for the command (Ray places it on a GPU node and sets CUDA_VISIBLE_DEVICES)")
    p.add_argument("--no-wait", action="store_true", help="submit, print the job id and return")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    return p


def parse_env(items: list[str], environ: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise SubmitError(f"--env {item!r}: expected KEY=VALUE or KEY")
        if not sep:
            if key not in environ:
                raise SubmitError(f"--env {key}: {key} is not set in this shell; give a value: --env {key}=VALUE")
            value = environ[key]
        env[key] = value
    return env


def build_request(args: argparse.Namespace, environ: dict[str, str]) -> JobRequest:
    """Options -> ``JobRequest`` (pure: reads only ``environ`` and whether the working dir exists)."""
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise SubmitError("no command given; put it after --, e.g.: verl-ext submit -- verl-ext train ...")
    runtime_env: dict[str, Any] = {}
    if args.runtime_env_json:
        try:
            runtime_env = json.loads(args.runtime_env_json)
        except json.JSONDecodeError as e:
            raise SubmitError(f"--runtime-env-json is not valid JSON ({e})") from e
        if not isinstance(runtime_env, dict):
            raise SubmitError("--runtime-env-json must be a JSON object, e.g. '{\"env_vars\": {\"A\": \"1\"}}'")
    if args.working_dir:
        wd = Path(args.working_dir).expanduser()
        if not wd.is_dir():
            raise SubmitError(f"--working-dir {args.working_dir}: not a folder")
        runtime_env["working_dir"] = str(wd.resolve())
    env_vars = dict(runtime_env.get("env_vars") or {})
    env_vars.update(parse_env(args.env, environ))
    bad = [k for k, v in env_vars.items() if not isinstance(v, str)]
    if bad:
        raise SubmitError(f"runtime env env_vars {', '.join(bad)}: values must be strings (Ray refuses others)")
    if env_vars:
        runtime_env["env_vars"] = env_vars
    return JobRequest(
        address=args.address or environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS,
        entrypoint=shlex.join(command),
        runtime_env=runtime_env,
        submission_id=args.submission_id,
        num_cpus=args.entrypoint_num_cpus,
        num_gpus=args.entrypoint_num_gpus,
    )


def exit_code(status: str, driver_exit_code: int | None) -> int:
    """Job status -> process exit status."""
    if status == "SUCCEEDED":
        return 0
    if status == "STOPPED":
        return STOPPED_EXIT
    return driver_exit_code if isinstance(driver_exit_code, int) and driver_exit_code > 0 else 1


async def _tail(client: "JobSubmissionClient", job_id: str, out) -> None:
    async for chunk in client.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()


def wait_terminal(client: "JobSubmissionClient", job_id: str, poll_s: float = 0.5,
                  timeout_s: float | None = None) -> "JobDetails":
    """Poll until the job is SUCCEEDED, FAILED or STOPPED; return its ``JobDetails``."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        info = client.get_job_info(job_id)
        if info.status.is_terminal():
            return info
        if deadline is not None and time.monotonic() > deadline:
            return info
        time.sleep(poll_s)


def follow(client: "JobSubmissionClient", job_id: str, out=None, err=None) -> int:
    """Stream the job's logs until it ends; Ctrl-C stops it. Returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        try:
            asyncio.run(_tail(client, job_id, out))
        except (OSError, RuntimeError) as e:  # websocket dropped: the job may still be running
            print(f"[verl-ext submit] log stream ended ({type(e).__name__}: {e}); waiting for the job", file=err)
        info = wait_terminal(client, job_id)
    except KeyboardInterrupt:
        print(f"\n[verl-ext submit] Ctrl-C: stopping job {job_id}", file=err)
        client.stop_job(job_id)
        try:
            info = wait_terminal(client, job_id, timeout_s=60)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, the stop request stands
            info = None
        if info is None or not info.status.is_terminal():
            state = "stopping" if info is None else info.status.value
            print(f"[verl-ext submit] job {job_id} is still {state}; check: ray job status {job_id}", file=err)
            return STOPPED_EXIT
    status = info.status.value
    code = exit_code(status, getattr(info, "driver_exit_code", None))
    tail = f": {info.message}" if status != "SUCCEEDED" and info.message else ""
    print(f"[verl-ext submit] job {job_id} {status}{tail}", file=err)
    return code


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        request = build_request(args, dict(os.environ))
    except SubmitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(request.address)
        job_id = client.submit_job(**request.submit_kwargs())
    except ConnectionError as e:
        print(f"error: cannot reach the Ray dashboard at {request.address} ({str(e).splitlines()[0]}); "
              "start a cluster (ray start --head) or pass --address / set RAY_ADDRESS", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError) as e:  # the server refused the job (bad runtime env, duplicate id)
        print(f"error: job not submitted to {request.address}: {str(e).strip()}", file=sys.stderr)
        return 2
    print(f"[verl-ext submit] job {job_id} submitted to {request.address}: {request.entrypoint}", file=sys.stderr)
    if args.no_wait:
        print(f"[verl-ext submit] follow: ray job logs --address {request.address} -f {job_id}; "
              f"stop: ray job stop --address {request.address} {job_id}", file=sys.stderr)
        print(job_id)
        return 0
    return follow(client, job_id)


if __name__ == "__main__":
    sys.exit(main())
