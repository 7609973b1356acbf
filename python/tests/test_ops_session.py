"""ops/session.py: the handshake."""

from __future__ import annotations

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.sample import handshake_sample


def test_hello_reports_versions_and_echoes_the_sample(sidecar):
    _, client = sidecar
    env = client.decoded("hello", protocol=protocol.PROTOCOL_VERSION, client="pytest", sample=handshake_sample())
    assert env["ok"], env
    r = env["result"]
    assert r["protocol"] == protocol.PROTOCOL_VERSION and r["backend"] == "cpu" and r["x64"] is True
    assert r["devices"][0]["platform"] == "cpu"
    from jaxbridge_sidecar.sample import same

    assert same(r["sample"], handshake_sample())


def test_hello_refuses_another_protocol_version(sidecar):
    _, client = sidecar
    env, _ = client.request("hello", protocol=99, client="pytest")
    assert not env["ok"] and "99" in env["error"]["message"]
