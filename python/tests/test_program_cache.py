"""program/cache.py, through the `run` op: programs are cached by the hash
the sidecar computes, a hash alone works once the program is held, and the
cache is bounded."""

from __future__ import annotations

import numpy as np

from jaxbridge_sidecar.program import program_hash

from programs_support import Builder, aval, expected, f32, mlp_program


def test_run_lowers_once_then_runs_by_hash_without_relowering_or_retracing(sidecar):
    server, client = sidecar
    data = mlp_program()
    h = program_hash(data)
    x = np.random.default_rng(0).standard_normal((2, 3))
    w = np.random.default_rng(1).standard_normal((3, 4))
    first = client.decoded("run", hash=h, program=data, args=[x, w], fetch=True)
    assert first["ok"], first
    assert first["result"]["lowered"] is True and first["result"]["traced"] is True
    assert np.array_equal(first["result"]["outputs"][0], expected(x, w))
    for _ in range(3):
        again = client.decoded("run", hash=h, args=[x, w], fetch=True)
        assert again["ok"], again
        assert again["result"]["lowered"] is False and again["result"]["traced"] is False
        assert np.array_equal(again["result"]["outputs"][0], first["result"]["outputs"][0])
    stats = client.decoded("program_stats")["result"]
    assert stats["programs"] == 1 and stats["lowered"] == 1 and stats["traces"] == 1 and stats["hits"] == 3


def test_a_hash_the_sidecar_does_not_hold_is_unknown_program_until_the_body_is_sent(sidecar):
    _, client = sidecar
    data = mlp_program()
    h = program_hash(data)
    x, w = np.ones((2, 3)), np.ones((3, 4))
    miss = client.decoded("run", hash=h, args=[x, w], fetch=True)
    assert not miss["ok"] and miss["error"]["type"] == "UnknownProgram" and h in miss["error"]["message"]
    ok = client.decoded("run", hash=h, program=data, args=[x, w], fetch=True)
    assert ok["ok"], ok


def test_a_tampered_hash_is_refused_and_nothing_is_cached_under_it(sidecar):
    _, client = sidecar
    data = mlp_program()
    wrong = "0" * 64
    env = client.decoded("run", hash=wrong, program=data, args=[np.ones((2, 3)), np.ones((3, 4))], fetch=True)
    assert not env["ok"] and env["error"]["type"] == "ProgramHashMismatch"
    assert program_hash(data) in env["error"]["message"]
    env = client.decoded("run", hash=wrong, args=[np.ones((2, 3)), np.ones((3, 4))], fetch=True)
    assert env["error"]["type"] == "UnknownProgram"
    # A body that hashes to the hash of another program cannot replace it either.
    other = Builder(aval("float64", 2, 3), aval("float64", 3, 4))
    other.eq("neg", [0], {}, [aval("float64", 2, 3)])
    h = program_hash(data)
    client.decoded("run", hash=h, program=data, args=[np.ones((2, 3)), np.ones((3, 4))], fetch=True)
    env = client.decoded("run", hash=h, program=other.bytes([2]), args=[np.ones((2, 3)), np.ones((3, 4))], fetch=True)
    assert env["error"]["type"] == "ProgramHashMismatch"


def test_the_cache_is_bounded_and_an_evicted_program_is_unknown_again(sidecar):
    server, client = sidecar
    server.programs.capacity = 2
    hashes = []
    for k in range(3):
        b = Builder(aval("float32", 2))
        b.eq("mul", [0, f32(float(k + 2))], {}, [aval("float32", 2)])
        data = b.bytes([1])
        hashes.append(program_hash(data))
        assert client.decoded("run", hash=hashes[-1], program=data, args=[np.ones(2, np.float32)], fetch=True)["ok"]
    assert client.decoded("run", hash=hashes[0], args=[np.ones(2, np.float32)])["error"]["type"] == "UnknownProgram"
    assert client.decoded("run", hash=hashes[2], args=[np.ones(2, np.float32)], fetch=True)["ok"]
    assert client.decoded("program_stats")["result"]["evicted"] == 1


def test_malformed_run_requests_are_protocol_errors(sidecar):
    _, client = sidecar
    assert client.decoded("run", hash="abc", args=[])["error"]["type"] == "ProtocolError"
    assert client.decoded("run", hash="A" * 64, args=[])["error"]["type"] == "ProtocolError"
    data = mlp_program()
    assert client.decoded("run", hash=program_hash(data), program="text", args=[])["error"]["type"] == "ProtocolError"
