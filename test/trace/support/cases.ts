import assert from "node:assert/strict";
import type { NDArray } from "../../../src/values/ndarray.js";
import type { Tracer } from "../../../src/trace/tracer.js";
import type { FlatOut } from "../../../src/trace/trace.js";
import type { Oracle } from "./oracle.js";
import { DeviceArray } from "../../../src/values/device-array.js";
import type { Session } from "../../../src/session/session.js";

/** One generated case: a traced builder and the same computation in Python (`x0`, `x1`, ... are its inputs). */
export interface Case {
  desc: string;
  args: NDArray[];
  ts: (xs: Tracer[]) => FlatOut | FlatOut[];
  py: string;
  tol?: { rtol?: number; atol?: number };
  /** The tolerance when run eagerly against jax.numpy op by op, when it differs (default: `tol`). */
  eagerTol?: { rtol?: number; atol?: number };
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

/** One Python function of all the batch's arguments returning every case's outputs (`x0`, `x1`, ... are each case's own). */
function batchPython(batch: readonly Case[], offsets: readonly number[]): string {
  return `lambda *a: (${batch
    .map((c, i) => {
      const names = c.args.map((_, j) => `x${j}`);
      return `(lambda ${names.length ? names.join(", ") : "*_"}: ${c.py})(*a[${offsets[i]}:${offsets[i]! + c.args.length}])`;
    })
    .join(", ")},)`;
}

function offsetsOf(batch: readonly Case[]): number[] {
  const offsets: number[] = [];
  let k = 0;
  for (const c of batch) {
    offsets.push(k);
    k += c.args.length;
  }
  return offsets;
}

/**
 * The same cases run eagerly (test/trace/eager.test.ts): the arguments are
 * put on the session's sidecar, each case's builder runs on DeviceArrays
 * outside any trace (every op dispatched at once), and the outputs are
 * compared with the Python expression run op by op by jax.numpy (no jit).
 * Batched like runCases; a failing batch is re-run case by case.
 */
export async function runEagerCases(oracle: Oracle, session: Session, cases: readonly Case[], x64: boolean, batchSize = 16): Promise<void> {
  const failures: string[] = [];
  for (let start = 0; start < cases.length; start += batchSize) {
    const batch = cases.slice(start, start + batchSize);
    const tolOf = (c: Case) => c.eagerTol ?? c.tol;
    const mismatch = await runEagerBatch(oracle, session, batch, x64, batch.map(tolOf).find((t) => t !== undefined));
    if (mismatch === null) continue;
    for (const c of batch) {
      const m = await runEagerBatch(oracle, session, [c], x64, tolOf(c));
      if (m !== null) failures.push(`${c.desc}: ${m}`);
    }
    if (!failures.length) failures.push(`batch ${start}: ${mismatch} (but each case alone agrees)`);
  }
  assert.deepEqual(failures, [], `\n${failures.join("\n")}`);
}

async function runEagerBatch(oracle: Oracle, session: Session, batch: readonly Case[], x64: boolean, tol?: { rtol?: number; atol?: number }): Promise<string | null> {
  const args = batch.flatMap((c) => c.args);
  const offsets = offsetsOf(batch);
  const placed = await session.put(args);
  const outs: DeviceArray[] = [];
  try {
    batch.forEach((c, i) => {
      const xs = placed.slice(offsets[i], offsets[i]! + c.args.length) as unknown as Tracer[];
      const out = c.ts(xs);
      for (const o of Array.isArray(out) ? out : [out]) {
        if (!(o instanceof DeviceArray)) throw new Error(`${c.desc}: an eager op returned ${String(o)}, not a DeviceArray`);
        outs.push(o);
      }
    });
  } catch (e) {
    return `error: ${(e as Error).stack}`;
  }
  let ours: NDArray[];
  try {
    ours = (await session.get(outs)) as NDArray[];
  } catch (e) {
    return `error: ${(e as Error).message}`;
  } finally {
    for (const a of [...placed, ...outs]) a.dispose();
  }
  return oracle.compareEager(ours, args, batchPython(batch, offsets), { x64, tol });
}

export async function runBatch(oracle: Oracle, batch: readonly Case[], x64: boolean, tol?: { rtol?: number; atol?: number }): Promise<string | null> {
  const args = batch.flatMap((c) => c.args);
  const offsets = offsetsOf(batch);
  const py = batchPython(batch, offsets);
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
