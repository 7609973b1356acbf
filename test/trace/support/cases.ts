import assert from "node:assert/strict";
import type { NDArray } from "../../../src/values/ndarray.js";
import type { Tracer } from "../../../src/trace/tracer.js";
import type { FlatOut } from "../../../src/trace/trace.js";
import type { Oracle } from "./oracle.js";

/** One generated case: a traced builder and the same computation in Python (`x0`, `x1`, ... are its inputs). */
export interface Case {
  desc: string;
  args: NDArray[];
  ts: (xs: Tracer[]) => FlatOut | FlatOut[];
  py: string;
  tol?: { rtol?: number; atol?: number };
}

/**
 * Run cases through the oracle in batches (one program and one Python
 * function per batch, so compiles stay few). A failing batch is re-run case
 * by case to name the culprit.
 */
export async function runCases(oracle: Oracle, cases: readonly Case[], x64: boolean, batchSize = 12): Promise<void> {
  const failures: string[] = [];
  for (let start = 0; start < cases.length; start += batchSize) {
    const batch = cases.slice(start, start + batchSize);
    const tol = batch.find((c) => c.tol)?.tol;
    const mismatch = await runBatch(oracle, batch, x64, tol);
    if (mismatch === null) continue;
    for (const c of batch) {
      const m = await runBatch(oracle, [c], x64, c.tol);
      if (m !== null) failures.push(`${c.desc}: ${m}`);
    }
    if (!failures.length) failures.push(`batch ${start}: ${mismatch} (but each case alone agrees)`);
  }
  assert.deepEqual(failures, [], `\n${failures.join("\n")}`);
}

export async function runBatch(oracle: Oracle, batch: readonly Case[], x64: boolean, tol?: { rtol?: number; atol?: number }): Promise<string | null> {
  const args = batch.flatMap((c) => c.args);
  const offsets: number[] = [];
  let k = 0;
  for (const c of batch) {
    offsets.push(k);
    k += c.args.length;
  }
  const py = `lambda *a: (${batch
    .map((c, i) => {
      const names = c.args.map((_, j) => `x${j}`);
      return `(lambda ${names.length ? names.join(", ") : "*_"}: ${c.py})(*a[${offsets[i]}:${offsets[i]! + c.args.length}])`;
    })
    .join(", ")},)`;
  const res = await oracle.compare(
    (...xs) =>
      batch.flatMap((c, i) => {
        const out = c.ts(xs.slice(offsets[i], offsets[i]! + c.args.length));
        return Array.isArray(out) ? out : [out];
      }),
    args,
    py,
    { x64, tol },
  );
  return res.mismatch;
}
