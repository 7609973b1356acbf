/**
 * JAX's transformations against JAX itself: generated functions (jnp, nn,
 * random keys, filterScan with reverse and unroll, filterCond, checkpoint
 * with policies) under generated transformations (grad with argnums,
 * value_and_grad with aux, jvp, vjp, linearize, jacfwd, jacrev, hessian,
 * vmap of grad, grad of vmap, jacfwd of jacrev, grad of grad, custom JVP
 * and VJP rules, grad of checkpoint), each written once in TypeScript and
 * once in Python (support/transform-gen.ts). Both run under jax.jit on CPU
 * and are compared bit for bit: the same lax primitives reach JAX, which
 * differentiates them with the same rules, so XLA compiles the same HLO.
 * (Eager Python would not do: outside jit, JAX dispatches op by op and XLA
 * fuses differently, so the oracle compares jitted with jitted.)
 *
 * One tolerance, and why: Python's jnp functions are small jitted
 * functions (`jit(inline=True)`), and JAX's reverse pass sums the
 * cotangents of a value inside such a boundary before adding them to
 * those outside it (`add_any` grouping); a program here names the lax
 * primitives jnp would produce, without jnp's boundaries, so where a value
 * takes several cotangents the additions may be grouped differently and
 * the last bits differ. A case that is not bit-identical must agree within
 * a few ulps (TOLERANCE), and at least 97% of the cases must be
 * bit-identical. Cases are batched into a few programs per dtype.
 */
import assert from "node:assert/strict";
import type { DType } from "../../../src/values/dtype.js";
import { type Case, runBatch } from "../support/cases.js";
import { Oracle, rng } from "../support/oracle.js";
import { genCases, TRANSFORMS, type TransformKind } from "../support/transform-gen.js";

const oracle = new Oracle();
after(() => oracle.close());

const CONFIGS: { x64: boolean; dtype: DType; count: number; complex?: boolean; kinds?: readonly TransformKind[] }[] = [
  { x64: false, dtype: "float32", count: 90 },
  { x64: false, dtype: "bfloat16", count: 30 },
  { x64: false, dtype: "complex64", count: 30, complex: true },
  { x64: true, dtype: "float64", count: 90 },
  { x64: true, dtype: "complex128", count: 30, complex: true },
];

/** A few ulps of each dtype (see the header). */
const TOLERANCE: Partial<Record<DType, { rtol: number; atol: number }>> = {
  float32: { rtol: 1e-5, atol: 1e-6 },
  complex64: { rtol: 1e-5, atol: 1e-6 },
  bfloat16: { rtol: 3e-2, atol: 1e-2 },
  float64: { rtol: 1e-12, atol: 1e-14 },
  complex128: { rtol: 1e-12, atol: 1e-14 },
};

/**
 * Batches compared bit for bit; a batch that differs is compared case by
 * case, bit for bit, then within `tol`.
 */
async function compareCases(cases: readonly Case[], x64: boolean, batchSize: number, tol: { rtol: number; atol: number }): Promise<{ exact: number; close: string[]; failures: string[] }> {
  const out = { exact: 0, close: [] as string[], failures: [] as string[] };
  for (let start = 0; start < cases.length; start += batchSize) {
    const batch = cases.slice(start, start + batchSize);
    if ((await runBatch(oracle, batch, x64)) === null) {
      out.exact += batch.length;
      continue;
    }
    for (const c of batch) {
      const bits = await runBatch(oracle, [c], x64);
      if (bits === null) out.exact++;
      else if ((await runBatch(oracle, [c], x64, tol)) === null) out.close.push(`${c.desc}: ${bits}`);
      else out.failures.push(`${c.desc}: ${bits}`);
    }
  }
  return out;
}

describe("transformations against jax.grad, jax.vmap, ... (generated)", function () {
  this.timeout(900000);
  const seen = new Set<string>();
  let total = 0;
  let exact = 0;
  // One oracle process per x64 mode: the two modes run side by side.
  const results = new Map<(typeof CONFIGS)[number], Promise<{ exact: number; close: string[]; failures: string[] }>>();
  before(() => {
    const run = async (x64: boolean) => {
      for (const c of CONFIGS.filter((k) => k.x64 === x64)) {
        const r = rng(c.x64 ? 4000 + c.count : 5000 + c.count + (c.complex ? 7 : 0) + (c.dtype === "bfloat16" ? 3 : 0));
        const cases = genCases(r, c.count, { dtype: c.dtype, x64: c.x64, complex: c.complex }, c.kinds);
        for (const k of cases) for (const kind of k.kinds) seen.add(kind);
        total += cases.length;
        const p = compareCases(cases, c.x64, 15, TOLERANCE[c.dtype]!);
        results.set(c, p);
        await p.catch(() => undefined);
      }
    };
    void run(false);
    void run(true);
  });
  for (const c of CONFIGS) {
    it(`${c.count} ${c.dtype} cases (x64=${c.x64}): bit for bit, or within a few ulps`, async () => {
      while (!results.has(c)) await new Promise((res) => setTimeout(res, 50));
      const r = await results.get(c)!;
      exact += r.exact;
      if (r.close.length) console.log(`      ${r.close.length} within the tolerance, not bit-identical:\n${r.close.map((d) => `        ${d.slice(0, 300)}`).join("\n")}`);
      assert.deepEqual(r.failures, []);
    });
  }
  it("covered every transformation and the control flow inside; at least 97% bit-identical", () => {
    assert.ok(total >= 250, `${total} cases`);
    assert.ok(exact >= 0.97 * total, `${exact} of ${total} cases bit-identical`);
    for (const k of [...TRANSFORMS, "scan", "scan reverse", "scan unroll", "cond", "checkpoint", "random", "relu", "softplus", "matmul", "logsumexp"]) {
      assert.ok([...seen].some((s) => s === k || s.startsWith(`${k} `)), `no case covered ${k}`);
    }
  });
});
