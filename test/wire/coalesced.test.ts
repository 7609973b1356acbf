/**
 * Coalesced messages (docs/protocol.md "Coalesced messages"): requests made
 * while a send is under way leave together in one message, and the sidecar
 * answers them in one message. What must hold: far fewer messages than
 * requests for a pipelined chain, and nothing lost, repeated or reordered,
 * whatever mix of requests (arrays in frames, bulk puts that go alone,
 * errors, calls) is coalesced. Oracle: the same computations by JAX in
 * Python.
 */
import assert from "node:assert/strict";
import type { Session } from "../../src/session/session.js";
import type { DeviceArray } from "../../src/values/device-array.js";
import { array as hostArray, NDArray } from "../../src/values/ndarray.js";
import { SidecarError } from "../../src/values/errors.js";
import { isBatch, packBatch, splitBatch } from "../../src/wire/protocol.js";
import { ProtocolError } from "../../src/values/errors.js";
import "../../src/trace/lib/index.js";
import { Oracle, rng } from "../trace/support/oracle.js";
import { useSession } from "../support/session.js";

const oracle = new Oracle();
after(() => oracle.close());

describe("coalesced messages: the frame", () => {
  it("splits back into the messages it packed, and refuses a header that does not add up", () => {
    const r = rng(7);
    for (let t = 0; t < 200; t++) {
      const messages = Array.from({ length: 1 + Math.floor(r() * 6) }, () =>
        Array.from({ length: 1 + Math.floor(r() * 4) }, () => Buffer.from(Array.from({ length: Math.floor(r() * 9) }, () => Math.floor(r() * 256)))),
      );
      const frames = packBatch(messages);
      assert.ok(isBatch(frames[0]!));
      assert.deepEqual(splitBatch(frames), messages);
    }
    const one = [Buffer.from([0x80])];
    assert.throws(() => splitBatch([...packBatch([one, one]).slice(0, 2)]), ProtocolError);
    assert.throws(() => splitBatch([Buffer.concat([packBatch([one])[0]!.subarray(0, 7), Buffer.from([0x91, 0x00])]), one[0]!]), ProtocolError);
    // An ordinary envelope is never a batch header.
    assert.equal(isBatch(Buffer.from([0x82, 0xa2, 0x69, 0x64, 0x01, 0xa2, 0x6f, 0x70, 0xa4, 0x70, 0x69, 0x6e, 0x67])), false);
  });
});

describe("coalesced messages: a session", function () {
  this.timeout(300_000);
  const session = useSession({ x64: false });
  let jb: Session;
  beforeEach(() => (jb = session()));

  it("a chain of 3,000 eager ops leaves in far fewer messages than requests, and equals Python's chain", async () => {
    const [x0] = await jb.put([hostArray([0.25, -1, 2, 7], "float32")])
    await jb.sync();
    const before = jb.traffic;
    let x = x0!;
    for (let i = 0; i < 3000; i++) {
      const next = i % 2 === 0 ? x.mul(0.5) : x.add(0.75);
      if (x !== x0) x.dispose();
      x = next;
    }
    const got = await x.toHost();
    const after = jb.traffic;
    const requests = after.requests - before.requests;
    const messages = after.messages - before.messages;
    assert.ok(requests >= 3001, `${requests} requests`);
    assert.ok(messages * 4 < requests, `${requests} requests went in ${messages} messages`);
    const want = await oracle.exec<number[]>(
      false,
      `x = jnp.asarray(args[0])
for i in range(3000):
    x = x * 0.5 if i % 2 == 0 else x + 0.75
result = [float(v) for v in x]`,
      [hostArray([0.25, -1, 2, 7], "float32")],
    );
    assert.deepEqual(Array.from(got.data as Float32Array), want);
    x.dispose();
    x0!.dispose();
  });

  it("a mix of calls with arrays, bulk puts, small puts and failing calls, issued at once, loses nothing", async () => {
    const r = rng(11);
    const cases: { kind: "add" | "put" | "big" | "bad"; a: NDArray }[] = [];
    for (let i = 0; i < 400; i++) {
      const k = r();
      const kind = k < 0.5 ? "add" : k < 0.8 ? "put" : k < 0.9 ? "bad" : "big";
      const n = kind === "big" ? 100_000 : 1 + Math.floor(r() * 16);
      cases.push({ kind, a: new NDArray(Float32Array.from({ length: n }, () => Math.fround(r() * 10 - 5)), [n], "float32") });
    }
    const settled = await Promise.allSettled(
      cases.map(async ({ kind, a }) => {
        if (kind === "add") return jb.callWith<NDArray>("jax.numpy.add", { args: [a, a], fetch: true });
        if (kind === "bad") return jb.call("jax.numpy.reshape", a, [a.size + 1]);
        const [d] = await jb.put([a]);
        const back = await (d as DeviceArray).toHost();
        (d as DeviceArray).dispose();
        return back;
      }),
    );
    const wants = await oracle.exec<(number[] | string)[]>(
      false,
      `out = []
for kind, a in zip(${JSON.stringify(cases.map((c) => c.kind))}, args):
    if kind == "add":
        out.append([float(v) for v in jnp.add(a, a)])
    elif kind == "bad":
        try:
            jnp.reshape(a, (a.size + 1,))
            out.append("no error")
        except Exception as e:
            out.append(type(e).__name__)
    else:
        out.append([float(v) for v in jnp.asarray(a)])
result = out`,
      cases.map((c) => c.a),
    );
    settled.forEach((s, i) => {
      const want = wants[i]!;
      if (cases[i]!.kind === "bad") {
        assert.equal(s.status, "rejected", `case ${i}`);
        const err = (s as PromiseRejectedResult).reason as unknown;
        assert.ok(err instanceof SidecarError && err.remoteType.endsWith(want as string), `case ${i}: ${String(err)} / ${String(want)}`);
      } else {
        assert.equal(s.status, "fulfilled", `case ${i}: ${String((s as PromiseRejectedResult).reason)}`);
        assert.deepEqual(Array.from(((s as PromiseFulfilledResult<unknown>).value as NDArray).data as Float32Array), want, `case ${i}`);
      }
    });
    assert.equal((await jb.memory()).poisoned, 0);
  });
});
