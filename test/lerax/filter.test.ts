/**
 * filterCond / filterScan inside traced functions, on pytrees with static
 * leaves, against lerax: `lerax.utils.filter_scan` from PyPI, and
 * `filter_cond` as DESIGN.md specifies it (lerax 0.0.5 on PyPI has none;
 * the oracle writes it with eqx.partition + lax.cond). Run under
 * eqx.filter_jit so static outputs may leave the function.
 */
import assert from "node:assert/strict";
import { filterCond, filterScan } from "../../src/lerax/filter.js";
import { jnp } from "../../src/trace/lib/index.js";
import { traceFlat } from "../../src/trace/trace.js";
import { Tracer } from "../../src/trace/tracer.js";
import { flatten } from "../../src/values/tree.js";
import { Module } from "../../src/values/module.js";
import { Oracle, pick, randomArray, rng } from "../trace/support/oracle.js";

const oracle = new Oracle();
after(() => oracle.close());

const arrays = (tree: unknown): Tracer[] => flatten(tree).leaves.filter((l): l is Tracer => l instanceof Tracer);

const ACTS = { tanh: [jnp.tanh, "jnp.tanh"], sin: [jnp.sin, "jnp.sin"], relu: [(x: Tracer) => jnp.maximum(x, 0), "(lambda v: jnp.maximum(v, 0))"] } as const;
type Act = keyof typeof ACTS;

describe("filterScan against lerax.utils.filter_scan", function () {
  this.timeout(600000);
  for (const x64 of [false, true]) {
    it(`20 generated scans with static carry leaves, pytree xs and ys agree bit for bit (x64=${x64})`, async () => {
      const r = rng(x64 ? 301 : 302);
      const failures: string[] = [];
      for (let i = 0; i < 20; i++) {
        const act = pick(r, Object.keys(ACTS) as Act[]);
        const scale = pick(r, [1, 2, 3]);
        const reverse = r() < 0.3;
        const unroll = pick(r, [0, 1, 2, true] as const);
        const n = pick(r, [3, 5]);
        const h = randomArray(r, "float32", [4], { lo: -1, hi: 1 });
        const w = randomArray(r, "float32", [4, 4], { lo: -1, hi: 1 });
        const xa = randomArray(r, "float32", [n, 4], { lo: -1, hi: 1 });
        const xb = randomArray(r, "int32", [n], { lo: 0, hi: 5 });
        const [fn, pyAct] = ACTS[act];
        const res = await oracle.compare(
          (h0, w0, a, b) => {
            const init = { h: h0!, cfg: { act, scale }, params: [w0!, null, "tag"] as const };
            const [carry, ys] = filterScan(
              (c: typeof init, x: { a: Tracer; b: Tracer }) => {
                const z = fn(jnp.matmul(c.h, c.params[0]).add(x.a).mul(c.cfg.scale));
                const next = { ...c, h: z.add(x.b.astype("float32").mul(0.01)) };
                return [next, { s: jnp.sum(z), both: [z, x.b] }] as const;
              },
              init,
              { a: a!, b: b! },
              { reverse, unroll },
            );
            assert.equal(carry.cfg.act, act);
            assert.equal(carry.params[2], "tag");
            return [...arrays(carry), ...arrays(ys)];
          },
          [h, w, xa, xb],
          `lambda h0, w0, a, b: lerax.filter_scan(
  lambda c, x: (lambda z: ({**c, "h": z + x["b"].astype(jnp.float32) * 0.01}, {"s": jnp.sum(z), "both": [z, x["b"]]}))(${pyAct}((c["h"] @ c["params"][0] + x["a"]) * c["cfg"]["scale"])),
  {"h": h0, "cfg": {"act": "${act}", "scale": ${scale}}, "params": [w0, None, "tag"]},
  {"a": a, "b": b}, reverse=${reverse ? "True" : "False"}, unroll=${unroll === true ? "True" : unroll})`,
          { x64, filterJit: true },
        );
        if (res.mismatch) failures.push(`case ${i} (${act}, scale ${scale}, reverse ${reverse}, unroll ${unroll}): ${res.mismatch}`);
      }
      assert.deepEqual(failures, []);
    });
  }
});

describe("filterCond against filter_cond as specified", function () {
  this.timeout(600000);
  for (const x64 of [false, true]) {
    it(`20 generated conds with static args and outputs agree bit for bit (x64=${x64})`, async () => {
      const r = rng(x64 ? 401 : 402);
      const failures: string[] = [];
      for (let i = 0; i < 20; i++) {
        const actT = pick(r, Object.keys(ACTS) as Act[]);
        const actF = pick(r, Object.keys(ACTS) as Act[]);
        const k = pick(r, [1, 2]);
        const p = randomArray(r, "float32", [3], { lo: -1, hi: 1 });
        const q = randomArray(r, "float32", [3], { lo: -1, hi: 1 });
        const [ft, pyT] = ACTS[actT];
        const [ff, pyF] = ACTS[actF];
        const res = await oracle.compare(
          (a, b) => {
            const out = filterCond(
              jnp.sum(a!).gt(0),
              (m: { x: Tracer; k: number }, y: Tracer) => ({ out: ft(m.x.mul(m.k)).add(y), name: "model", extra: [y, 5] }),
              (m: { x: Tracer; k: number }, y: Tracer) => ({ out: ff(m.x).sub(y), name: "model", extra: [m.x, 5] }),
              { x: a!, k },
              b!,
            );
            assert.equal(out.name, "model");
            assert.equal(out.extra[1], 5);
            return arrays(out);
          },
          [p, q],
          `lambda a, b: filter_cond(jnp.sum(a) > 0,
  lambda m, y: {"out": ${pyT}(m["x"] * m["k"]) + y, "name": "model", "extra": [y, 5]},
  lambda m, y: {"out": ${pyF}(m["x"]) - y, "name": "model", "extra": [m["x"], 5]},
  {"x": a, "k": ${k}}, b)`,
          { x64, filterJit: true },
        );
        if (res.mismatch) failures.push(`case ${i}: ${res.mismatch}`);
      }
      assert.deepEqual(failures, []);
    });
  }
});

describe("filterCond / filterScan errors", () => {
  const spec = [{ dtype: "float32" as const, shape: [3] }];
  it("static outputs that differ name the first differing path and both values", () => {
    assert.throws(
      () =>
        traceFlat(
          (a) => arrays(filterCond(true, (x: Tracer) => ({ y: x, cfg: { act: "relu" } }), (x: Tracer) => ({ y: x, cfg: { act: "tanh" } }), a!)),
          spec,
          { x64: false },
        ),
      /filterCond: the non-array outputs of trueFun and falseFun must be identical; they differ at \['cfg'\]\['act'\]: trueFun gives 'relu', falseFun gives 'tanh'/,
    );
  });
  it("an array in one branch where the other has a static value is refused", () => {
    assert.throws(() => traceFlat((a) => arrays(filterCond(true, (x: Tracer) => [x, 1], (x: Tracer) => [x, x], a!)), spec, { x64: false }), /differ at \[1\]/);
  });
  it("a static carry leaf that changes is an error naming its path (lerax asserts)", () => {
    assert.throws(
      () =>
        traceFlat(
          (a) => {
            const [c] = filterScan((c: { h: Tracer; step: number }) => [{ h: c.h, step: c.step + 1 }, null] as const, { h: a!, step: 0 }, null, { length: 3 });
            return c.h;
          },
          spec,
          { x64: false },
        ),
      /filterScan: the non-array part of the carry must not change; it differs at \['step'\]: init has 0, f returned 1/,
    );
  });
  it("xs leaves must be arrays, named by path", () => {
    assert.throws(() => traceFlat((a) => filterScan((c: Tracer) => [c, null] as const, a!, { n: 3 } as never)[0], spec, { x64: false }), /xs leaves must be arrays; xs\['n'\] is number 3/);
  });
  it("ys leaves that are not arrays are refused, named by path", () => {
    assert.throws(() => traceFlat((a) => filterScan((c: Tracer) => [c, { s: "x" }] as const, a!, null, { length: 2 })[0], spec, { x64: false }), /y leaves must be arrays \(they are stacked\); y\['s'\] is the string "x"/);
  });
  it("a carry leaf whose dtype changes is named by its key path in the carry, in JAX's words", () => {
    class Params extends Module {
      w: Tracer;
      b: Tracer;
      constructor(w: Tracer, b: Tracer) {
        super();
        this.w = w;
        this.b = b;
      }
    }
    assert.throws(
      () =>
        traceFlat(
          (a) => {
            const init = { params: new Params(a!, a!), act: "relu", h: [a!, a!] as [Tracer, Tracer] };
            const [c] = filterScan((c: typeof init) => [{ ...c, params: new Params(c.params.w.astype("int32"), c.params.b) }, null] as const, init, null, { length: 2 });
            return c.h[0];
          },
          spec,
          { x64: false },
        ),
      /filterScan: scan body function carry input and carry output must have equal types, but they differ:\n\nThe input carry component carry\['params'\]\.w has type float32\[3\] but the corresponding output carry component has type int32\[3\], so the dtypes do not match\./,
    );
  });
  it("a branch output whose type differs is named by its key path and the branch, in JAX's words", () => {
    assert.throws(
      () =>
        traceFlat(
          (a) => arrays(filterCond(true, (x: Tracer) => ({ a: [x, x], s: "k" }), (x: Tracer) => ({ a: [x, x.astype("int32").get(0)], s: "k" }), a!)),
          spec,
          { x64: false },
        ),
      /filterCond: branches must have equal output types but they differ:\n\nThe output of trueFun at path \['a'\]\[1\] has type float32\[3\] but the corresponding output of falseFun has type int32\[\], so the dtypes do not match, and the shapes do not match\./,
    );
  });
  it("xs whose leading axes differ are named by their key paths", () => {
    assert.throws(
      () => traceFlat((a, b) => filterScan((c: Tracer) => [c, null] as const, a!, { obs: [a!, b!] }, {})[0], [{ dtype: "float32", shape: [3] }, { dtype: "float32", shape: [4, 2] }], { x64: false }),
      /filterScan: got values with different leading axis sizes: xs\['obs'\]\[0\] float32\[3\], xs\['obs'\]\[1\] float32\[4,2\]/,
    );
  });
});
