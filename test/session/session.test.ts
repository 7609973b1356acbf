import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { createHash } from "node:crypto";
import { array, NDArray, type DType, DeviceArray, BridgeInputError, SidecarDiedError, AbortedError, DeadlineError } from "../../src/index.js";
import { connect, type Session } from "../../src/session/session.js";
import { useSession } from "../support/session.js";
import { runPython } from "../support/python.js";
import { conformance } from "../conformance/index.js";


// The transport-independent behaviour, as for loopback TCP+CURVE and the container.
conformance("embedded sidecar over ipc", () => connect());

describe("session (embedded sidecar over ipc)", () => {
  const jb = useSession();

  it("keeps static leaves in TypeScript", async () => {
    const fn = (x: number) => x + 1;
    const tree = { w: array([1, 2, 3], "float32"), act: fn, name: "layer", n: 3 };
    const dev = await jb().put(tree);
    assert.ok(dev.w instanceof DeviceArray);
    assert.equal(dev.act, fn);
    assert.equal(dev.name, "layer");
    dev.w.dispose();
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

  it("reads arrays over 16 MiB that JAX made, each sent in one reply frame, as numpy's bytes", async function () {
    this.timeout(300_000);
    // 20 MiB of each: float64 and int8 view a frame in place (8- and 1-byte
    // elements), complex128 and bfloat16 are laid out as interleaved pairs and raw bits.
    const cases: Array<[DType, number]> = [["float64", 20 << 17], ["int8", 20 << 20], ["complex128", 20 << 16], ["bfloat16", 20 << 19]];
    const got: string[] = [];
    for (const [dtype, n] of cases) {
      const a = await jb().callWith<NDArray>("jax.numpy.arange", { args: [n], kwargs: { dtype }, fetch: true });
      assert.equal(a.dtype, dtype);
      assert.deepEqual(a.shape, [n]);
      got.push(createHash("sha256").update(Buffer.from(a.bytes())).digest("hex"));
    }
    const want = await runPython<string[]>(
      `import json,sys,hashlib,numpy as np,ml_dtypes
out=[]
for dtype,n in json.load(sys.stdin):
    dt=np.dtype(ml_dtypes.bfloat16) if dtype=='bfloat16' else np.dtype(dtype)
    out.append(hashlib.sha256(np.arange(n).astype(dt).tobytes()).hexdigest())
print(json.dumps(out))`,
      cases,
    );
    assert.deepEqual(got, want);
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
    const script = `import { connect } from "./src/session/session.ts"; const jb = await connect(); console.log("PID " + jb.info.pid + " URL " + jb.url); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let url = "";
    const pid = await new Promise<number>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /PID (\d+) URL (\S+)/.exec(out);
        if (m) {
          url = m[2]!;
          resolve(Number(m[1]));
        }
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
    // Its private socket folder goes with it: the parent that made it could not remove it.
    const dir = dirname(url.replace(/^ipc:\/\//, ""));
    assert.match(dir, /jaxbridge-/);
    assert.ok(!existsSync(dir), `${dir} was left behind`);
  });

  it("connects to a sidecar started elsewhere over tcp", async function () {
    this.timeout(180_000);
    const { sidecarPython } = await import("../../src/wire/python-env.js");
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
