import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { Dealer } from "zeromq";
import { pack, unpack } from "msgpackr";
import { array, NDArray, DTYPES, type DType, DeviceArray, BridgeInputError, SidecarError, SidecarDiedError, AbortedError, DeadlineError } from "../src/index.js";
import { connect, kw, type Session } from "../src/session.js";
import { runPython } from "./support/python.js";
import { randomArray } from "./support/random.js";
import { useSession } from "./support/session.js";


function b64(a: NDArray): string {
  return Buffer.from(a.bytes()).toString("base64");
}

describe("session (embedded sidecar over ipc)", () => {
  const jb = useSession();

  it("reports what the sidecar runs in the handshake", () => {
    const info = jb().info;
    assert.equal(info.protocol, 1);
    assert.equal(info.backend, "cpu");
    assert.ok(info.devices.length >= 1);
    assert.match(info.jax, /^\d+\.\d+/);
    assert.equal(info.x64, true);
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
    // Independent check: the device arrays hold exactly these bytes per numpy.
    const fetched = await jb().callWith<NDArray[]>("jax.device_get", { args: [dev], fetch: true });
    const py = await runPython<string[]>(
      `import json,sys,base64,numpy as np,ml_dtypes
cases=json.load(sys.stdin)
out=[]
for c in cases:
    dt=np.dtype(ml_dtypes.bfloat16) if c['dtype']=='bfloat16' else np.dtype(c['dtype'])
    a=np.frombuffer(base64.b64decode(c['b']),dtype=dt).reshape(c['shape'])
    out.append(base64.b64encode(a.tobytes()).decode())
print(json.dumps(out))`,
      cases.map((a) => ({ dtype: a.dtype, shape: a.shape, b: b64(a) })),
    );
    fetched.forEach((f, i) => assert.equal(b64(f), py[i]));
    for (const d of dev) d.dispose();
  });

  it("keeps static leaves in TypeScript", async () => {
    const fn = (x: number) => x + 1;
    const tree = { w: array([1, 2, 3], "float32"), act: fn, name: "layer", n: 3 };
    const dev = await jb().put(tree);
    assert.ok(dev.w instanceof DeviceArray);
    assert.equal(dev.act, fn);
    assert.equal(dev.name, "layer");
    dev.w.dispose();
  });

  it("calls allow-listed functions and matches numpy", async () => {
    const a = randomArray("float64", [3, 4]);
    const b = randomArray("float64", [4, 2]);
    // random bits can be NaN; use finite data
    const fa = array(Array.from({ length: 12 }, (_, i) => Math.sin(i + 1)), "float64", [3, 4]);
    const fb = array(Array.from({ length: 8 }, (_, i) => Math.cos(i * 0.7)), "float64", [4, 2]);
    void a;
    void b;
    const c = await jb().call<DeviceArray>("jax.numpy.matmul", fa, fb);
    assert.ok(c instanceof DeviceArray);
    assert.deepEqual(c.shape, [3, 2]);
    const host = await c.toHost();
    const want = await runPython<number[]>(
      `import json,sys,numpy as np
d=json.load(sys.stdin); a=np.array(d['a']).reshape(3,4); b=np.array(d['b']).reshape(4,2)
print(json.dumps((a@b).ravel().tolist()))`,
      { a: Array.from(fa.data as Float64Array), b: Array.from(fb.data as Float64Array) },
    );
    assert.deepEqual(Array.from(host.data as Float64Array), want);
    const s = await jb().callWith<NDArray>("jax.numpy.sum", { args: [c], kwargs: { axis: 0 }, fetch: true });
    assert.deepEqual(s.shape, [2]);
    const s2 = await jb().call<DeviceArray>("jax.numpy.sum", c, kw({ axis: 1 }));
    assert.deepEqual(s2.shape, [3]);
    c.dispose();
    s2.dispose();
  });

  it("refuses os.system and builtins.eval with a clear error and keeps serving", async () => {
    for (const name of ["os.system", "builtins.eval"]) {
      await assert.rejects(jb().call(name, "echo pwned"), (e: unknown) => e instanceof SidecarError && e.remoteType === "NotAllowed" && e.message.includes(name));
    }
    await jb().ping();
  });

  it("turns Python exceptions into SidecarError with type, message and traceback", async () => {
    const err = await jb()
      .call("jax.numpy.matmul", array([[1, 2, 3]], "float32"), array([[1, 2, 3]], "float32"))
      .then(
        () => null,
        (e: unknown) => e,
      );
    assert.ok(err instanceof SidecarError);
    assert.equal(err.remoteType, "TypeError");
    assert.match(err.remoteMessage, /contracting dimensions/);
    assert.ok(!err.remoteTraceback.includes("jaxbridge_sidecar"));
  });

  it("rejects bad input before sending anything, naming the pytree path", async () => {
    const before = (await jb().stats()).requests;
    assert.throws(() => array([[1, 2], [3]]), (e: unknown) => e instanceof BridgeInputError && e.message.includes("[1]"));
    assert.throws(() => array([1, 2], "float8" as DType), /unsupported dtype "float8"/);
    await assert.rejects(jb().call("jax.numpy.sum", { params: { w: () => 1 } }), (e: unknown) => e instanceof BridgeInputError && e.path === "args[0]['params']['w']");
    await assert.rejects(jb().call("jax.numpy.sum", new Float32Array(3)), /wrap it with array/);
    const after = (await jb().stats()).requests;
    assert.equal(after, before + 1, "only the second stats call reached the sidecar");
  });

  it("delivers 1,000 calls in flight at once without losing or misrouting a reply", async () => {
    const xs = Array.from({ length: 1000 }, (_, i) => array([i], "int32"));
    const outs = await Promise.all(xs.map((x) => jb().callWith<NDArray>("jax.numpy.add", { args: [x, 1], fetch: true })));
    outs.forEach((o, i) => assert.equal(o.item(0), i + 1));
  });

  it("round-trips a 256 MiB array bit-exactly", async function () {
    this.timeout(300_000);
    const n = (256 * 1024 * 1024) / 4;
    const data = new Uint32Array(n);
    for (let i = 0; i < n; i++) data[i] = (Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0;
    const a = new NDArray(data, [n], "uint32");
    const d = await jb().put(a);
    const b = await d.toHost();
    assert.equal(b.data.length, n);
    assert.equal(Buffer.compare(Buffer.from(b.bytes()), Buffer.from(a.bytes())), 0);
    d.dispose();
  });

  it("frees handles on dispose, batched, and through the FinalizationRegistry", async () => {
    const base = (await jb().stats()).handles;
    const ds = await jb().put(Array.from({ length: 50 }, (_, i) => array([i], "float32")));
    assert.equal((await jb().stats()).handles, base + 50);
    for (const d of ds.slice(0, 25)) d.dispose();
    assert.equal((await jb().stats()).handles, base + 25);
    await (async () => {
      await using held = await jb().put(array([1], "float32"));
      assert.ok(held instanceof DeviceArray);
    })();
    assert.equal((await jb().stats()).handles, base + 25);
    ds.length = 0;
    const g = (globalThis as { gc?: () => void }).gc;
    if (g) {
      for (let k = 0; k < 20 && (await jb().stats()).handles > base; k++) {
        g();
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal((await jb().stats()).handles, base);
    }
  });

  it("abandons an aborted call, rejects it at once, and frees its result when it arrives", async () => {
    const big = array(Array.from({ length: 400 * 400 }, (_, i) => Math.sin(i)), "float64", [400, 400]);
    const base = (await jb().stats()).handles;
    const ac = new AbortController();
    const p = jb().callWith("jax.numpy.linalg.svd", { args: [big], signal: ac.signal });
    ac.abort();
    await assert.rejects(p, (e: unknown) => e instanceof AbortedError);
    await assert.rejects(jb().callWith("jax.numpy.linalg.svd", { args: [big], timeoutMs: 1 }), (e: unknown) => e instanceof DeadlineError);
    for (let k = 0; k < 100 && (await jb().stats()).handles !== base; k++) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await jb().stats()).handles, base, "results of abandoned calls were freed");
  });

  it("answers malformed envelopes from a raw DEALER with error replies, and keeps serving", async () => {
    const raw = new Dealer({ linger: 0 });
    raw.connect(jb().url);
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
    raw.close();
    await jb().ping();
  });
});

describe("session lifetime", () => {
  it("rejects pending calls promptly when the sidecar is SIGKILLed mid-call, and later calls fail fast", async function () {
    this.timeout(180_000);
    const jb = await connect();
    try {
      const big = array(Array.from({ length: 1500 * 1500 }, (_, i) => Math.sin(i)), "float64", [1500, 1500]);
      const dev = await jb.put(big);
      const pending = Array.from({ length: 4 }, () => jb.call("jax.numpy.linalg.svd", dev));
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      process.kill(jb.info.pid, "SIGKILL");
      const results = await Promise.allSettled(pending);
      const elapsed = Date.now() - t0;
      for (const r of results) {
        assert.equal(r.status, "rejected");
        assert.ok((r as PromiseRejectedResult).reason instanceof SidecarDiedError, String((r as PromiseRejectedResult).reason));
      }
      assert.ok(elapsed < 1000, `pending calls rejected after ${elapsed} ms`);
      const t1 = Date.now();
      await assert.rejects(jb.ping(), (e: unknown) => e instanceof SidecarDiedError && /SIGKILL/.test((e as Error).message));
      assert.ok(Date.now() - t1 < 100);
    } finally {
      await jb.close();
    }
  });

  it("the embedded sidecar exits by itself when its Node parent is SIGKILLed", async function () {
    this.timeout(180_000);
    const script = `import { connect } from "./src/session.ts"; const jb = await connect(); console.log("PID " + jb.info.pid); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    const pid = await new Promise<number>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /PID (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.on("exit", () => reject(new Error(`child exited early: ${out}`)));
    });
    const alive = (p: number): boolean => {
      try {
        process.kill(p, 0);
        return true;
      } catch {
        return false;
      }
    };
    assert.ok(alive(pid));
    child.kill("SIGKILL");
    const t0 = Date.now();
    while (alive(pid) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!alive(pid), "sidecar still running 5 s after its parent was killed");
  });

  it("connects to a sidecar started elsewhere over tcp", async function () {
    this.timeout(180_000);
    const { sidecarPython } = await import("../src/python-env.js");
    const port = 20000 + Math.floor(Math.random() * 20000);
    const proc = spawn(sidecarPython(), ["-m", "jaxbridge_sidecar", "serve", "--endpoint", `tcp://127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((resolve, reject) => {
        proc.stdout.on("data", (d: Buffer) => d.toString().includes("READY") && resolve());
        proc.on("exit", (c) => reject(new Error(`sidecar exited ${c}`)));
      });
      const jb: Session = await connect({ url: `tcp://127.0.0.1:${port}` });
      const r = await jb.callWith<NDArray>("jax.numpy.add", { args: [array([1, 2], "int32"), 40], fetch: true });
      assert.deepEqual(r.toList(), [41, 42]);
      await jb.close();
    } finally {
      proc.kill("SIGKILL");
    }
  });
});
