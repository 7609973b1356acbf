/**
 * The conformance suite: what any session must do end to end, whatever the
 * sidecar is (embedded over ipc, a process on loopback TCP with CURVE, a
 * container). `conformance(name, makeSession)` defines the mocha tests; the
 * caller starts and stops the sidecar in its own hooks. Python (numpy, JAX)
 * on this machine is the oracle.
 */
import assert from "node:assert/strict";
import { Dealer } from "zeromq";
import { pack, unpack } from "msgpackr";
import { DeviceArray } from "../../src/values/device-array.js";
import { DTYPES } from "../../src/values/dtype.js";
import { SidecarError } from "../../src/values/errors.js";
import { NDArray, array } from "../../src/values/ndarray.js";
import { PROTOCOL_VERSION } from "../../src/wire/protocol.js";
import { kw, type Session } from "../../src/session/session.js";
import type { CurveClientKeys } from "../../src/wire/transport.js";
import { jnp } from "../../src/trace/lib/index.js";
import { jit } from "../../src/trace/jit.js";
import type { Tracer } from "../../src/trace/tracer.js";
import { runPython } from "../support/python.js";
import { randomArray } from "../support/random.js";

export interface ConformanceOptions {
  /** Keys for the raw DEALER the malformed-message test opens (the session's own, for a CURVE sidecar). */
  curve?: CurveClientKeys | (() => CurveClientKeys | undefined);
  /** The backend the handshake must report (default: any). */
  backend?: string;
}

function b64(a: NDArray): string {
  return Buffer.from(a.bytes()).toString("base64");
}

function finite(n: number, shape: number[], f: (i: number) => number): NDArray {
  return array(Array.from({ length: n }, (_, i) => f(i)), "float64", shape);
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    assert.ok(Math.abs(g - w) <= 1e-12 * Math.max(1, Math.abs(w)), `${what}[${i}]: ${g} vs ${w}`);
  }
}

/** Define the conformance tests for the session `makeSession` resolves to (closed after the suite). */
export function conformance(name: string, makeSession: () => Promise<Session>, opts: ConformanceOptions = {}): void {
  describe(`conformance: ${name}`, function () {
    this.timeout(180_000);
    let session: Session | undefined;
    const jb = (): Session => {
      if (!session) throw new Error("the conformance session did not start");
      return session;
    };

    before(async function () {
      this.timeout(300_000);
      session = await makeSession();
    });
    after(async () => {
      await session?.close();
    });

    it("reports what the sidecar runs in the handshake", () => {
      const info = jb().info;
      assert.equal(info.protocol, PROTOCOL_VERSION);
      if (opts.backend) assert.equal(info.backend, opts.backend);
      assert.ok(info.devices.length >= 1);
      assert.match(info.jax, /^\d+\.\d+/);
      assert.equal(info.x64, true);
      assert.equal(info.max_frame_bytes, 16 * 1024 * 1024);
      assert.match(info.instance, /^[0-9a-f]{16}$/);
    });

    it("round-trips every dtype, 0-d and empty shapes bit-exactly, and Python sees the same bytes", async () => {
      const cases: NDArray[] = [];
      for (const dtype of DTYPES) for (const shape of [[], [0], [5], [2, 0, 3], [3, 4]]) cases.push(randomArray(dtype, shape));
      const dev = await jb().put(cases);
      const back = await jb().get(dev);
      cases.forEach((a, i) => {
        const b = back[i]!;
        assert.equal(b.dtype, a.dtype);
        assert.deepEqual(b.shape, a.shape);
        assert.deepEqual(Buffer.from(b.bytes()), Buffer.from(a.bytes()), `${a.dtype}[${a.shape}]`);
      });
      const fetched = await jb().callWith<NDArray[]>("jax.device_get", { args: [dev], fetch: true });
      const py = await runPython<string[]>(
        `import json,sys,base64,numpy as np,ml_dtypes
out=[]
for c in json.load(sys.stdin):
    dt=np.dtype(ml_dtypes.bfloat16) if c['dtype']=='bfloat16' else np.dtype(c['dtype'])
    out.append(base64.b64encode(np.frombuffer(base64.b64decode(c['b']),dtype=dt).reshape(c['shape']).tobytes()).decode())
print(json.dumps(out))`,
        cases.map((a) => ({ dtype: a.dtype, shape: a.shape, b: b64(a) })),
      );
      fetched.forEach((f, i) => assert.equal(b64(f), py[i], `${cases[i]!.dtype}[${cases[i]!.shape}]`));
      for (const d of dev) d.dispose();
    });

    it("round-trips a 40 MiB array split over several frames", async function () {
      this.timeout(300_000);
      const n = (40 * 1024 * 1024) / 4;
      const data = new Uint32Array(n);
      for (let i = 0; i < n; i++) data[i] = (Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0;
      const a = new NDArray(data, [n], "uint32");
      const d = await jb().put(a);
      const sum = await jb().callWith<NDArray>("jax.numpy.sum", { args: [d], kwargs: { dtype: "uint64" }, fetch: true });
      let want = 0n;
      for (let i = 0; i < n; i++) want += BigInt(data[i]!);
      assert.equal((sum.data as BigUint64Array)[0], want);
      const b = await d.toHost();
      assert.equal(Buffer.compare(Buffer.from(b.bytes()), Buffer.from(a.bytes())), 0);
      d.dispose();
    });

    it("calls allow-listed functions and matches numpy and JAX run here", async () => {
      const fa = finite(12, [3, 4], (i) => Math.sin(i + 1));
      const fb = finite(8, [4, 2], (i) => Math.cos(i * 0.7));
      const c = await jb().call<DeviceArray>("jax.numpy.matmul", fa, fb);
      assert.ok(c instanceof DeviceArray);
      assert.deepEqual(c.shape, [3, 2]);
      const s = await jb().callWith<NDArray>("jax.numpy.sum", { args: [c], kwargs: { axis: 0 }, fetch: true });
      const t = await jb().call<DeviceArray>("jax.numpy.tanh", c);
      const key = await jb().call<DeviceArray>("jax.random.PRNGKey", 0);
      const noise = await jb().callWith<NDArray>("jax.random.normal", { args: [key, [3]], fetch: true });
      const want = await runPython<{ mm: number[]; sum: number[]; tanh: number[]; noise: number[] }>(
        `import json,sys,numpy as np
import jax; jax.config.update("jax_enable_x64", True)
d=json.load(sys.stdin); a=np.array(d['a']).reshape(3,4); b=np.array(d['b']).reshape(4,2); m=a@b
print(json.dumps({"mm": m.ravel().tolist(), "sum": m.sum(0).tolist(), "tanh": np.tanh(m).ravel().tolist(),
  "noise": np.asarray(jax.random.normal(jax.random.PRNGKey(0), (3,))).tolist()}))`,
        { a: Array.from(fa.data as Float64Array), b: Array.from(fb.data as Float64Array) },
      );
      assertClose((await c.toHost()).data as Float64Array, want.mm, "matmul");
      assertClose(s.data as Float64Array, want.sum, "sum(axis=0)");
      assertClose((await t.toHost()).data as Float64Array, want.tanh, "tanh");
      assertClose(noise.data as Float64Array, want.noise, "jax.random.normal");
      const s1 = await jb().call<DeviceArray>("jax.numpy.sum", c, kw({ axis: 1 }));
      assert.deepEqual(s1.shape, [3]);
      for (const d of [c, t, key, s1]) d.dispose();
    });

    it("runs a jit-compiled TypeScript function, sending its program once", async () => {
      const f = jit((x: NDArray, y: NDArray) => jnp.add(jnp.multiply(x as unknown as Tracer, y as unknown as Tracer), 1), { session: jb(), name: "fma" });
      const x = array([[1, 2], [3, 4]], "float32");
      const y = array([[0.5, -1], [2, 0.25]], "float32");
      for (let k = 0; k < 3; k++) {
        const r = (await f(x, y)) as DeviceArray;
        assert.deepEqual((await r.toHost()).toList(), [[1.5, -1], [7, 2]]);
        r.dispose();
      }
      assert.equal(f.stats.traces, 1);
      assert.equal(f.stats.programsSent, 1);
    });

    it("answers errors with the remote type, message and traceback, and keeps serving", async () => {
      for (const fn of ["os.system", "builtins.eval"]) {
        await assert.rejects(jb().call(fn, "echo pwned"), (e: unknown) => e instanceof SidecarError && e.remoteType === "NotAllowed" && e.message.includes(fn));
      }
      const err = await jb()
        .call("jax.numpy.matmul", array([[1, 2, 3]], "float32"), array([[1, 2, 3]], "float32"))
        .then(
          () => null,
          (e: unknown) => e,
        );
      assert.ok(err instanceof SidecarError, String(err));
      assert.equal(err.remoteType, "TypeError");
      assert.match(err.remoteMessage, /contracting dimensions/);
      assert.ok(!err.remoteTraceback.includes("jaxbridge_sidecar"));
      await jb().ping();
    });

    it("answers malformed envelopes from a raw DEALER with error replies, and keeps serving", async () => {
      const curve = typeof opts.curve === "function" ? opts.curve() : opts.curve;
      const raw = new Dealer({
        linger: 0,
        receiveTimeout: 30_000,
        ...(curve ? { curveServerKey: curve.serverPublicKey, curvePublicKey: curve.publicKey, curveSecretKey: curve.secretKey } : {}),
      });
      raw.connect(jb().url);
      try {
        const cases: Array<[Buffer[], string]> = [
          [[Buffer.from([0xc1])], "ProtocolError"],
          [[pack({ id: 1, op: "nope" })], "UnknownOp"],
          [[pack({ id: 2, op: "get", value: [] }), Buffer.alloc(3)], "FrameError"],
        ];
        for (const [frames, kind] of cases) {
          await raw.send(frames);
          const [head] = await raw.receive();
          const env = unpack(head!) as { ok: boolean; error: { type: string } };
          assert.equal(env.ok, false);
          assert.equal(env.error.type, kind);
        }
      } finally {
        raw.close();
      }
      await jb().ping();
    });

    it("delivers 1,000 calls in flight at once without losing or misrouting a reply", async () => {
      const xs = Array.from({ length: 1000 }, (_, i) => array([i], "int32"));
      const outs = await Promise.all(xs.map((x) => jb().callWith<NDArray>("jax.numpy.add", { args: [x, 1], fetch: true })));
      outs.forEach((o, i) => assert.equal(o.item(0), i + 1));
    });

    it("frees handles on dispose", async () => {
      const base = (await jb().stats()).handles;
      const ds = await jb().put(Array.from({ length: 20 }, (_, i) => array([i], "float32")));
      assert.equal((await jb().stats()).handles, base + 20);
      for (const d of ds) d.dispose();
      await jb().ping();
      assert.equal((await jb().stats()).handles, base);
    });
  });
}
