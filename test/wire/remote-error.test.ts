/**
 * Error replies carry Python's exception chain, and SidecarError shows it
 * short: against the stdlib's own reading of the chain
 * (traceback.TracebackException, what Python prints) and equinox's own
 * errors, on a real sidecar; the reader of the `error` map refuses
 * malformed ones; long messages are capped where docs/protocol.md and
 * SidecarError say, with the full text on the error.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DeviceArray, kw, type RemoteModule } from "../../src/index.js";
import { deserializeRemote, serializeRemote } from "../../src/io/remote-serialize.js";
import { CAUSE_LINE_CAP, MESSAGE_CAP, ProtocolError, SidecarError } from "../../src/values/errors.js";
import { remoteError } from "../../src/wire/remote-error.js";
import { runPython } from "../support/python.js";
import { useSession } from "../support/session.js";

interface PyFailure {
  type: string;
  message: string;
  causes: { type: string; message: string }[];
}

/** The oracle: call `expr` in plain Python and read the exception and its chain as the traceback printer does. */
const PY_CHAIN = `
import json, sys, traceback
def qual(te):
    if hasattr(te, "exc_type_str"):
        return te.exc_type_str
    t = te.exc_type
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
def failure(thunk):
    try:
        thunk()
    except Exception as e:
        te = traceback.TracebackException(type(e), e, e.__traceback__)
        out = {"type": qual(te), "message": str(e), "causes": []}
        while True:
            te = te.__cause__ if te.__cause__ is not None else (None if te.__suppress_context__ else te.__context__)
            if te is None:
                return out
            out["causes"].append({"type": qual(te), "message": str(te)})
    raise AssertionError("no exception")
`;

/** What a promise that must fail rejects with. */
const rejection = (p: Promise<unknown>, why: string): Promise<unknown> =>
  p.then(
    () => assert.fail(why),
    (e: unknown) => e,
  );

describe("error replies: Python's exception chain, capped messages", function () {
  this.timeout(180_000);
  const jb = useSession({ allow: ["equinox.nn"] });

  it("a call that raises while handling another exception carries that chain, outermost first, as Python prints it", async () => {
    const arg = "x".repeat(5000);
    const want = await runPython<PyFailure>(`${PY_CHAIN}
import jax.numpy as jnp
print(json.dumps(failure(lambda: jnp.array(${JSON.stringify(arg)}))))`);
    assert.ok(want.causes.length >= 1, "the oracle's exception should have a context");
    const err = await rejection(jb().call("jax.numpy.array", arg), "the call should fail");
    assert.ok(err instanceof SidecarError);
    assert.equal(err.remoteType, want.type);
    assert.equal(err.remoteMessage, want.message);
    assert.deepEqual(err.causes, want.causes);
    // The message: the type, the first MESSAGE_CAP characters and where the rest is, then the innermost cause in one short line.
    const inner = want.causes[want.causes.length - 1]!;
    const [head, causeLine, ...rest] = err.message.split("\n");
    assert.deepEqual(rest, []);
    assert.equal(head, `${want.type}: ${want.message.slice(0, MESSAGE_CAP)} [... ${want.message.length - MESSAGE_CAP} more characters: error.remoteMessage has all ${want.message.length}]`);
    assert.ok(causeLine!.startsWith(`  caused by ${inner.type}: ${inner.message.slice(0, CAUSE_LINE_CAP)}`), causeLine);
    assert.ok(causeLine!.length <= CAUSE_LINE_CAP + 100, `the cause line is ${causeLine!.length} characters`);
    assert.ok(err.stack!.includes("Python exception chain (outermost first):"));
  });

  it("a message past the sidecar's cap arrives cut in the middle, the cut named; the rest reaches the error whole", async () => {
    const arg = "y".repeat(40000);
    const want = await runPython<PyFailure>(`${PY_CHAIN}
import jax.numpy as jnp
print(json.dumps(failure(lambda: jnp.zeros(${JSON.stringify(arg)}))))`);
    const err = await rejection(jb().call("jax.numpy.zeros", arg), "the call should fail");
    assert.ok(err instanceof SidecarError);
    const limit = 16384;
    const cut = want.message.length - limit;
    const head = (limit * 3) / 4;
    assert.equal(err.remoteMessage, `${want.message.slice(0, head)}\n[... ${cut} characters cut by the sidecar ...]\n${want.message.slice(want.message.length - (limit - head))}`);
    assert.ok(err.message.length < MESSAGE_CAP + 200, `message of ${err.message.length} characters`);
  });

  it("deserializeRemote of a corrupted file reports equinox's inner cause, not only its TreePathError", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jaxbridge-errors-"));
    try {
      const nn = await jb().import("equinox.nn");
      const key = await jb().call<DeviceArray>("jax.random.PRNGKey", 3);
      const m = (await nn.MLP(kw({ in_size: 3, out_size: 2, width_size: 4, depth: 2, key }))) as RemoteModule;
      const file = await serializeRemote(jb(), m, join(dir, "policy"));
      const bytes = readFileSync(file);
      const broken = join(dir, "broken.eqx");
      writeFileSync(broken, bytes.subarray(0, bytes.length - 4));
      // The oracle: equinox itself, on the same bytes after the 32-byte fingerprint, into the same skeleton.
      const want = await runPython<PyFailure>(`${PY_CHAIN}
import io, jax, equinox as eqx
jax.config.update("jax_enable_x64", True)
data = open(${JSON.stringify(broken)}, "rb").read()[32:]
like = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(0))
print(json.dumps(failure(lambda: eqx.tree_deserialise_leaves(io.BytesIO(data), like))))`);
      const err = await rejection(deserializeRemote(jb(), broken, m), "loading a truncated file should fail");
      assert.ok(err instanceof SidecarError);
      assert.equal(err.remoteType, "equinox._serialisation.TreePathError");
      assert.equal(err.remoteType, want.type);
      assert.deepEqual(err.causes, want.causes);
      const root = want.causes[want.causes.length - 1]!;
      assert.match(root.message, /EOF: reading array data|Failed to read all data for array/);
      assert.ok(err.message.includes(`\n  caused by ${root.type}: ${root.message}`), err.message);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the sidecar's own error kinds (NotAllowed here) arrive with an empty chain", async () => {
    const err = await rejection(jb().call("os.system", "true"), "os.system must be refused");
    assert.ok(err instanceof SidecarError);
    assert.equal(err.remoteType, "NotAllowed");
    assert.deepEqual(err.causes, []);
    assert.ok(!err.message.includes("caused by"));
  });
});

describe("reading the error map (src/wire/remote-error.ts)", () => {
  it("reads type, message, traceback and causes; a body without causes has none", () => {
    const e = remoteError({ type: "ValueError", message: "outer", traceback: "tb", causes: [{ type: "KeyError", message: "'k'" }, { type: "OSError", message: "disk\nsecond line" }] }, "call");
    assert.ok(e instanceof SidecarError);
    assert.deepEqual(e.causes, [
      { type: "KeyError", message: "'k'" },
      { type: "OSError", message: "disk\nsecond line" },
    ]);
    assert.equal(e.message, "ValueError: outer\n  caused by OSError: disk [...: error.causes has all of it]");
    assert.equal(e.op, "call");
    const old = remoteError({ type: "ValueError", message: "m", traceback: "" }, "put");
    assert.ok(old instanceof SidecarError);
    assert.deepEqual(old.causes, []);
    assert.equal(old.message, "ValueError: m");
  });
  it("a malformed error map is a ProtocolError naming what is wrong", () => {
    const cases: [unknown, RegExp][] = [
      [undefined, /`error` is not a map/],
      [["ValueError"], /`error` is not a map/],
      [{ message: "m" }, /`error.type` is not a string/],
      [{ type: "E", message: 3 }, /`error.message` is not a string/],
      [{ type: "E", message: "m", traceback: ["x"] }, /`error.traceback` is not a string/],
      [{ type: "E", message: "m", causes: "x" }, /`error.causes` is not a list/],
      [{ type: "E", message: "m", causes: [{ type: "T" }] }, /an entry of `error.causes` is not \{type, message\}/],
    ];
    for (const [body, why] of cases) {
      const e = remoteError(body, "run");
      assert.ok(e instanceof ProtocolError, `${JSON.stringify(body)} gave ${String(e)}`);
      assert.match(e.message, /^malformed error reply to run: /);
      assert.match(e.message, why);
    }
    const huge = remoteError({ message: "z".repeat(100000) }, "run");
    assert.ok(huge.message.length < 500, `a malformed reply's error is ${huge.message.length} characters`);
  });
  it("a long innermost cause shows its first CAUSE_LINE_CAP characters", () => {
    const e = remoteError({ type: "E", message: "m", causes: [{ type: "V", message: "v".repeat(CAUSE_LINE_CAP * 2) }] }, "call");
    assert.equal(e.message, `E: m\n  caused by V: ${"v".repeat(CAUSE_LINE_CAP)} [...: error.causes has all of it]`);
  });
});
