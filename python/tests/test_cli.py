"""The command line: `ops` prints the serving dispatch table as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
