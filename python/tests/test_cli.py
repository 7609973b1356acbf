"""The command line: `ops` prints the serving dispatch table as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.server import Server, ServerConfig


def run_ops(**env: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "jaxbridge_sidecar", "ops"], capture_output=True, text=True, timeout=120, env={**os.environ, **env}, check=True)
    return json.loads(out.stdout)


def test_ops_lists_exactly_the_served_ops_sorted_with_their_family(tmp_path):
    listed = run_ops()
    assert listed["protocol"] == protocol.PROTOCOL_VERSION
    names = [o["name"] for o in listed["ops"]]
    assert names == sorted(names)
    server = Server(ServerConfig(endpoint=f"ipc://{tmp_path}/unused.sock"))
    try:
        served = set(server.ops)
    finally:
        server.close()
    assert set(names) == served
    assert all(isinstance(o["family"], str) and o["family"] for o in listed["ops"])


def test_ops_never_lists_the_benchmark_ops():
    names = {o["name"] for o in run_ops(JAXBRIDGE_BENCH_OPS="1")["ops"]}
    assert not any(n.startswith("bench_") for n in names) and "run" in names


def test_serve_refuses_a_device_count_below_one_before_starting_jax(tmp_path):
    out = subprocess.run([sys.executable, "-m", "jaxbridge_sidecar", "serve", "--endpoint", f"ipc://{tmp_path}/s.sock", "--num-cpu-devices", "0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--num-cpu-devices must be at least 1, got 0" in out.stderr


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--coordinator", "127.0.0.1:1234"], "needs --coordinator, --num-processes and --process-id together; got only --coordinator"),
        (["--num-processes", "2", "--process-id", "0"], "got only --num-processes, --process-id"),
        (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "--coordinator must be HOST:PORT"),
        (["--coordinator", "h:99999", "--num-processes", "2", "--process-id", "0"], "--coordinator must be HOST:PORT"),
        (["--coordinator", "h:1", "--num-processes", "0", "--process-id", "0"], "--num-processes must be at least 1, got 0"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "--process-id must be in [0, 2) for --num-processes 2, got 2"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "1", "--heartbeat-timeout", "0"], "--heartbeat-timeout must be at least 1 second"),
    ],
)
def test_serve_refuses_an_incomplete_or_bad_job_before_starting_jax(tmp_path, flags, message):
    # Refused before jax.distributed.initialize, which would otherwise wait for peers that never come.
    out = subprocess.run([sys.executable, "-m", "jaxbridge_sidecar", "serve", "--endpoint", f"ipc://{tmp_path}/s.sock", *flags], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and message in out.stderr, out.stderr
