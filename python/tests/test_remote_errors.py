"""remote_errors.py: the error body carries the exception chain exactly as
Python's own traceback printer follows it (traceback.TracebackException is
the oracle), bounded in size; a real sidecar sends it, for its own error
kinds too."""

from __future__ import annotations

import io
import random
import traceback

import equinox as eqx
import jax

from jaxbridge_sidecar.remote_errors import MAX_CAUSES, MAX_TEXT_CHARS, cap_text, error_body, exception_chain

from remote_support import _back, _mlp


class AppError(Exception):
    pass


def _type_str(te: traceback.TracebackException) -> str:
    """The type as the printer names it (exc_type_str from 3.13; exc_type before)."""
    if hasattr(te, "exc_type_str"):
        return te.exc_type_str
    t = te.exc_type
    return t.__qualname__ if t.__module__ in ("builtins", "__main__") else f"{t.__module__}.{t.__qualname__}"


def _printed_chain(exc: BaseException) -> list[tuple[str, str]]:
    """What `traceback.print_exception` shows before the exception itself, innermost last."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    out = []
    while True:
        nxt = te.__cause__ if te.__cause__ is not None else (None if te.__suppress_context__ else te.__context__)
        if nxt is None:
            return out
        out.append((_type_str(nxt), str(nxt)))
        te = nxt


def _raise_chain(links: list[tuple[type[BaseException], str, str]]) -> BaseException:
    """Raise links[0] .. links[-1], each while handling the previous one: `how`
    is "from" (explicit cause), "context" (implicit) or "none" (from None)."""

    def level(i: int) -> None:
        cls, message, how = links[i]
        if i == 0:
            raise cls(message)
        try:
            level(i - 1)
        except BaseException as inner:  # noqa: BLE001
            if how == "from":
                raise cls(message) from inner
            if how == "none":
                raise cls(message) from None
            raise cls(message)  # noqa: B904 - the implicit __context__ is the point

    try:
        level(len(links) - 1)
    except BaseException as e:  # noqa: BLE001
        return e
    raise AssertionError("unreachable")


def test_generated_chains_match_what_python_prints():
    r = random.Random(13)
    kinds = [ValueError, TypeError, KeyError, AppError, RuntimeError, OSError]
    seen_suppressed = 0
    for _ in range(200):
        n = r.randint(1, 6)
        links = [(r.choice(kinds), f"message {i} " + "x" * r.randint(0, 40), r.choice(["from", "context", "context", "none"])) for i in range(n)]
        exc = _raise_chain(links)
        body = error_body(exc)
        assert body["type"] == (type(exc).__qualname__ if type(exc).__module__ == "builtins" else f"{type(exc).__module__}.{type(exc).__qualname__}")
        assert body["message"] == str(exc)
        want = _printed_chain(exc)
        assert [(c["type"], c["message"]) for c in body["causes"]] == want
        if len(want) < n - 1:
            seen_suppressed += 1
    assert seen_suppressed > 10


def test_a_cycle_ends_the_chain():
    a, b = ValueError("a"), TypeError("b")
    a.__context__, b.__context__ = b, a
    assert exception_chain(a) == [b]
    assert [c["message"] for c in error_body(a)["causes"]] == ["b"]


def test_long_messages_and_chains_are_capped_with_the_cut_named():
    text = "".join(chr(ord("a") + i % 26) for i in range(MAX_TEXT_CHARS * 3 + 7))
    capped = cap_text(text)
    cut = len(text) - MAX_TEXT_CHARS
    assert f"[... {cut} characters cut by the sidecar ...]" in capped
    head, tail = capped.split(f"\n[... {cut} characters cut by the sidecar ...]\n")
    assert text.startswith(head) and text.endswith(tail) and len(head) + len(tail) == MAX_TEXT_CHARS
    assert cap_text("short") == "short"

    exc = _raise_chain([(ValueError, f"level {i}", "from") for i in range(MAX_CAUSES + 10)])
    causes = error_body(exc)["causes"]
    assert len(causes) == MAX_CAUSES
    # The outermost causes are kept, and the innermost (the root cause); the ones between are dropped.
    assert [c["message"] for c in causes] == [f"level {i}" for i in range(MAX_CAUSES + 8, MAX_CAUSES + 8 - (MAX_CAUSES - 1), -1)] + ["level 0"]

    big = ValueError(text)
    assert error_body(big)["message"] == capped


def test_a_broken_str_does_not_lose_the_reply():
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    try:
        try:
            raise Broken()
        except Broken as inner:
            raise ValueError("outer") from inner
    except ValueError as e:
        body = error_body(e)
    assert body["causes"] == [{"type": "test_remote_errors.test_a_broken_str_does_not_lose_the_reply.<locals>.Broken", "message": "<test_remote_errors.test_a_broken_str_does_not_lose_the_reply.<locals>.Broken: str() failed>"}]


def test_a_corrupted_leaf_file_reports_equinox_s_inner_cause(eqx_sidecar):
    """deserialise_leaves of truncated bytes: the reply's chain is the one equinox raises in Python."""
    _, client = eqx_sidecar
    m = _mlp(client)
    saved = client.decoded("serialise_leaves", value=_back(m))["result"]["leaves"]
    env, _ = client.request("deserialise_leaves", like=_back(m), leaves=saved[:-4])
    assert not env["ok"]
    ref = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(0))
    try:
        eqx.tree_deserialise_leaves(io.BytesIO(saved[:-4]), ref)
    except Exception as e:  # noqa: BLE001
        want = error_body(e)
    assert env["error"]["type"] == want["type"] == "equinox._serialisation.TreePathError"
    assert env["error"]["causes"] == want["causes"]
    assert env["error"]["causes"][-1]["type"] == "ValueError"
    assert "reading array data" in env["error"]["causes"][-1]["message"] or "Failed to read all data" in env["error"]["causes"][-1]["message"]


def test_the_sidecar_s_own_error_kinds_carry_the_chain_field_too(sidecar):
    _, client = sidecar
    env, _ = client.request("free", handles="not a list")
    assert not env["ok"]
    assert env["error"]["type"] == "ProtocolError" and env["error"]["traceback"] == "" and env["error"]["causes"] == []
    env, _ = client.request("call", fn="os.system", args=["true"], kwargs={})
    assert env["error"]["type"] == "NotAllowed" and env["error"]["causes"] == []
