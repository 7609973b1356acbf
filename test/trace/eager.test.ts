/**
 * Eager operations: outside a traced function, jnp / lax / nn / random and
 * the array methods run at once on DeviceArrays (src/trace/eager.ts). The
 * oracle is Python: the generated cases of the trace tests
 * (support/jnp-cases.ts, support/nn-random-cases.ts) run eagerly here and
 * op by op by jax.numpy there, in both x64 modes, bit for bit. Plus what
 * eager dispatch itself promises: results typed at once, shape errors at
 * the call site, one program per op and signature sent once, weak types as
 * JAX keeps them, and `x + 1` refused.
 */
import assert from "node:assert/strict";
import type { Session } from "../../src/session/session.js";
import { DeviceArray } from "../../src/values/device-array.js";
import { array as hostArray } from "../../src/values/ndarray.js";
import { TraceError } from "../../src/trace/errors.js";
import { jit, programStats } from "../../src/trace/jit.js";
import { eagerStats } from "../../src/trace/eager.js";
import { jnp, lax, nn, random } from "../../src/trace/lib/index.js";
import * as rawJnp from "../../src/trace/lib/jnp.js";
import * as rawLax from "../../src/trace/lib/lax.js";
import * as rawNn from "../../src/trace/lib/nn.js";
import * as rawRandom from "../../src/trace/lib/random.js";
import { EAGER_OP } from "../../src/trace/lib/eager/wrap.js";
import type { Tracer } from "../../src/trace/tracer.js";
import { runEagerCases } from "./support/cases.js";
import { binaryCases, creationCases, indexingCases, linalgCases, reductionCases, shapeCases, unaryCases } from "./support/jnp-cases.js";
import { activationCases, oneHotCases, randomCases } from "./support/nn-random-cases.js";
import { Oracle, pick, rng } from "./support/oracle.js";
import { useSession } from "../support/session.js";

const oracle = new Oracle();
after(() => oracle.close());

describe("eager namespaces", () => {
  // Functions of the library modules that are not ops: helpers of the tracer itself, and jnp.slice (a Slice object).
  const NOT_OPS: Record<string, string[]> = {
    jnp: ["AtIndexer", "NDArray", "broadcastIns", "convertTo", "promote", "slice", "toInexact"],
    // The collectives need a named axis (shardMap, vmap) and withShardingConstraint a jit: trace-only, as in JAX.
    lax: ["checkDType", "rawBind", "retypeLiteral", "allGather", "allToAll", "axisIndex", "axisSize", "pmax", "pmean", "pmin", "ppermute", "psum", "psumScatter", "withShardingConstraint"],
    nn: [],
    random: ["keyData"],
  };
  for (const [name, raw, both] of [
    ["jnp", rawJnp, jnp],
    ["lax", rawLax, lax],
    ["nn", rawNn, nn],
    ["random", rawRandom, random],
  ] as const) {
    it(`every op of ${name} works in both worlds`, () => {
      const fns = Object.entries(raw).filter(([, v]) => typeof v === "function");
      const missing = fns.filter(([k]) => !NOT_OPS[name]!.includes(k) && (both as Record<string, unknown>)[k] !== undefined && !(EAGER_OP in ((both as Record<string, object>)[k] as object))).map(([k]) => k);
      assert.deepEqual(missing, [], `${name}: not wrapped for eager use`);
      for (const k of NOT_OPS[name]!) assert.equal((both as Record<string, unknown>)[k], (raw as Record<string, unknown>)[k], `${name}.${k} is the library's own`);
    });
  }
});

// Each eager op compiles a program of its own on both sides (the trace tests batch many cases
// into one program), so the cases are a sample: more of them in the x64 mode the sidecar runs by
// default, fewer in the other.
for (const x64 of [true, false]) {
  describe(`eager ops vs jax.numpy op by op (x64=${x64})`, function () {
    this.timeout(600_000);
    // The default session (creation ops with no array argument run there): this mode's, while it is open.
    const session = useSession({ x64 });
    let jb: Session;
    beforeEach(() => (jb = session()));
    const r = rng(x64 ? 7 : 8);
    const some = <T>(xs: readonly T[], n: number): T[] => Array.from({ length: n }, () => pick(r, xs));
    const k = x64 ? 1 : 0.5;

    it("generated elementwise cases (dtypes, broadcasting, special values) agree bit for bit", async () => {
      await runEagerCases(oracle, jb, [...unaryCases(x64 ? 111 : 112, x64, 20 * k), ...binaryCases(x64 ? 121 : 122, x64, 26 * k)], x64, 50);
    });

    it("reductions, shape manipulation, matmul / einsum, creation and indexing (with .at updates) agree", async () => {
      const cases = [...some(reductionCases(x64 ? 131 : 132, x64), 10 * k), ...some(shapeCases(141), 15 * k), ...some(linalgCases(x64 ? 151 : 152, x64), 6 * k), ...creationCases(x64), ...some(indexingCases(161), 22 * k)];
      await runEagerCases(oracle, jb, cases, x64, 50);
    });

    it("nn activations, one_hot and random samplers (keys, split, fold_in) agree", async () => {
      await runEagerCases(oracle, jb, [...some(activationCases(x64), 8 * k), ...oneHotCases(), ...randomCases(x64, 8 * k)], x64, 50);
    });
  });
}

describe("eager dispatch", function () {
  this.timeout(180_000);
  const session = useSession();
  let jb: Session;
  beforeEach(() => (jb = session()));

  it("returns a DeviceArray at once with its dtype and shape, before the sidecar ran it", async () => {
    const [x] = await jb.put([hostArray([[1, 2, 3], [4, 5, 6]], "float32")]);
    const y = x!.mul(2).add(1).sum({ axis: 0 });
    assert.ok(y instanceof DeviceArray);
    assert.equal(y.dtype, "float32");
    assert.deepEqual(y.shape, [3]);
    assert.equal(y.pending, true, "the reply cannot have arrived in the same tick");
    assert.deepEqual(Array.from((await y.toHost()).data as Float32Array), [12, 16, 20]);
    assert.equal(y.pending, false);
    assert.equal(await y.block(), y);
  });

  it("throws shape and dtype errors at the call site, synchronously, as inside a trace", async () => {
    const [a, b] = await jb.put([hostArray([1, 2, 3], "float32"), hostArray([1, 2], "float32")]);
    assert.throws(() => a!.add(b!), (e: unknown) => e instanceof TraceError && /add/.test(e.message) && /\[3\]/.test(e.message) && /\[2\]/.test(e.message) && /eager\.test\.ts/.test(e.message));
    assert.throws(() => jnp.matmul(a!, b!), TraceError);
    assert.throws(() => a!.reshape([2, 2]), TraceError);
  });

  it("`x + 1` throws a TypeError that points to x.add(1); a string conversion still works", async () => {
    const [x] = await jb.put([hostArray([1], "float32")]);
    assert.throws(() => (x as unknown as number) + 1, (e: unknown) => e instanceof TypeError && /x\.add\(1\)/.test((e as Error).message) && /toHost/.test((e as Error).message));
    assert.throws(() => (x as unknown as number) > 0, TypeError);
    assert.throws(() => Number(x), TypeError);
    assert.match(`${x}`, /^DeviceArray\(float32\[1\]/);
  });

  it("runs each op as one program per signature, sent once, then by hash; literals are part of the signature", async () => {
    const [x] = await jb.put([hostArray([1, 2, 3, 4], "int16")]);
    const before = await programStats(jb);
    const t0 = eagerStats.traces;
    let y = x!;
    for (let i = 0; i < 20; i++) y = y.add(3).mul(2);
    await y.block();
    const after = await programStats(jb);
    assert.equal(eagerStats.traces - t0, 2, "x.add(3) and x.mul(2) traced once each");
    assert.equal(after.lowered - before.lowered, 2, "and lowered once each by the sidecar");
    assert.equal(after.hits - before.hits, 38);
    let want = [1, 2, 3, 4];
    for (let i = 0; i < 20; i++) want = want.map((v) => (((v + 3) * 2) << 16) >> 16);
    assert.deepEqual(Array.from((await y.toHost()).data as Int16Array), want);
    y.add(4);
    assert.equal(eagerStats.traces - t0, 3, "another literal is another program");
  });

  it("keeps JAX's weak types: an op on JS numbers only is weak and takes its partner's dtype", async () => {
    const w = jnp.add(2, 3) as unknown as DeviceArray;
    assert.equal(w.weak, true);
    const [u8] = await jb.put([hostArray([250], "uint8")]);
    const s = u8!.add(w);
    assert.equal(s.dtype, "uint8");
    const t = await oracle.execTree(jb.info.x64, "result = jnp.asarray([250], jnp.uint8) + jnp.add(2, 3)");
    assert.ok(t.ok);
    assert.deepEqual(Array.from((await s.toHost()).data as Uint8Array), Array.from((t.leaves[0] as { data: Uint8Array }).data));
  });

  it("lax, nn and random work on device arrays; a key made eagerly samples as jax.random does", async () => {
    const k = random.key(42) as unknown as DeviceArray;
    const z = random.normal(random.split(k).get(1), [3], { dtype: "float32" });
    const r = nn.relu(lax.neg(z));
    const t = await oracle.execTree(jb.info.x64, "result = jax.nn.relu(-random.normal(random.split(random.key(42))[1], (3,), jnp.float32))");
    assert.ok(t.ok);
    assert.deepEqual(Array.from((await r.toHost()).data as Float32Array), Array.from((t.leaves[0] as { data: Float32Array }).data));
  });

  it("a DeviceArray captured by a traced function still records equations there", async () => {
    const [w] = await jb.put([hostArray([1, 2, 3], "float32")]);
    const f = jit((x: Tracer) => w!.mul(x).add(1));
    const x = await jb.put(hostArray([2, 2, 2], "float32"));
    const out = (await f(x as unknown as Tracer)) as DeviceArray;
    assert.deepEqual(Array.from((await out.toHost()).data as Float32Array), [3, 5, 7]);
    assert.equal(f.programs[0]!.program.inputs.length, 2, "the captured array is a program input");
  });
});
