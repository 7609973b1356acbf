/**
 * Running traced programs on a session: `jit(fn)` and the program runner
 * under it. Uses only the session's public `request` / `put` / `info`.
 *
 * - A jitted function traces once per signature (the argument tree's
 *   structure, its static leaves compared by value, and the dtype and shape
 *   of each array leaf); later calls with the same signature reuse the
 *   Program without calling `fn`.
 * - The first run on a sidecar sends the program's bytes with its hash;
 *   later runs send only the hash. A sidecar that lost it (restarted,
 *   evicted) answers `UnknownProgram` and the runner resends the body once.
 * - Array outputs come back as DeviceArrays (or NDArrays with `fetch`);
 *   static (non-array) outputs never left TypeScript and are put back into
 *   the output tree here.
 * - NDArrays the function captured are put on the device on the first run
 *   and passed as handles afterwards.
 *
 * Inside a traced function `jit(fn)(...)` just calls `fn` (it is inlined
 * into the enclosing program, as nested jit is in JAX).
 */

import type { DeviceArray as DeviceArrayT } from "../device-array.js";
import { DeviceArray } from "../device-array.js";
import { NDArray } from "../ndarray.js";
import { SidecarError } from "../errors.js";
import type { RequestOptions, Session } from "../session.js";
import { getDefaultSession } from "../session.js";
import { flatten, isArray, staticValueEqual, type TreeDef, treedefEqual, unflatten } from "../tree.js";
import { type Concrete, currentTrace, isConcrete, Trace } from "./core.js";
import { encodeProgram, IR_VERSION, type Program, sha256Hex } from "./ir.js";
import { asTracer } from "./lax.js";
import { Tracer } from "./tracer.js";
import { traceError } from "./errors.js";
import type { Traced } from "./trace.js";

export interface RunOptions extends RequestOptions {
  /** Return host arrays instead of device handles. */
  fetch?: boolean;
  /** Send only the hash even if this session has not sent the program (benchmarks, tests of the resend path). */
  assumeHeld?: boolean;
}

export interface RunResult {
  outputs: (DeviceArrayT | NDArray)[];
  /** This call sent the program's bytes (the sidecar did not hold it). */
  sentProgram: boolean;
  /** The sidecar lowered the program on this call. */
  lowered: boolean;
  /** JAX traced (compiled) the program on this call. */
  traced: boolean;
}

const heldBySession = new WeakMap<Session, { instance: string; hashes: Set<string> }>();

function held(session: Session): Set<string> {
  let h = heldBySession.get(session);
  if (!h || h.instance !== session.instance) {
    h = { instance: session.instance, hashes: new Set() };
    heldBySession.set(session, h);
  }
  return h.hashes;
}

/**
 * Run a traced program with its array arguments (captures are appended
 * here). Sends the body only when the sidecar may not hold it.
 */
export async function runProgram(session: Session, traced: Pick<Traced, "hash" | "bytes" | "captures">, args: readonly (NDArray | DeviceArrayT)[], opts: RunOptions = {}): Promise<RunResult> {
  const hashes = held(session);
  const all = [...args, ...traced.captures];
  const send = async (withBody: boolean) => {
    const fields: Record<string, unknown> = { hash: traced.hash, args: all, fetch: opts.fetch === true };
    if (withBody) fields.program = traced.bytes;
    return (await session.request("run", fields, opts)) as { outputs: (DeviceArrayT | NDArray)[]; lowered: boolean; traced: boolean };
  };
  let sentProgram = !hashes.has(traced.hash) && opts.assumeHeld !== true;
  let reply;
  try {
    reply = await send(sentProgram);
  } catch (e) {
    if (!(e instanceof SidecarError && e.remoteType === "UnknownProgram") || sentProgram) throw e;
    hashes.delete(traced.hash);
    sentProgram = true;
    reply = await send(true);
  }
  hashes.add(traced.hash);
  return { outputs: reply.outputs, sentProgram, lowered: reply.lowered, traced: reply.traced };
}

// --- jit ---------------------------------------------------------------------------------

interface Entry {
  argDef: TreeDef;
  statics: unknown[];
  avals: string;
  traced: Traced;
  outDef: TreeDef;
  /** Output leaves: an index into the program outputs, or a static value kept here. */
  outLeaves: ({ output: number } | { value: unknown })[];
  /** Captured NDArrays placed on the device once (by position in traced.captures). */
  placed: Map<number, DeviceArrayT>;
}

export interface JitOptions {
  /** The session to run on (default: the default session). */
  session?: Session;
  name?: string;
}

export interface JitStats {
  /** Times `fn` was traced (once per signature). */
  traces: number;
  /** Calls made. */
  calls: number;
  /** Calls that sent the program body. */
  programsSent: number;
}

export type Jitted<A extends unknown[], R> = ((...args: A) => Promise<R>) & { readonly stats: JitStats; readonly signatures: number };

const avalKey = (x: NDArray | DeviceArrayT): string => `${x.dtype}[${x.shape.join(",")}]`;

/**
 * `jit(fn)`: trace `fn` once per signature into a Program and run it on the
 * sidecar. Array leaves of the arguments (NDArray, DeviceArray) are traced;
 * every other leaf is static (part of the signature). Returns a function
 * whose calls resolve to `fn`'s output tree with DeviceArrays for array
 * leaves (NDArrays with `{fetch: true}` through `jitted.withOptions`).
 */
export function jit<A extends unknown[], R>(fn: (...args: A) => R, opts: JitOptions = {}): Jitted<A, unknown> {
  const entries: Entry[] = [];
  const stats: JitStats = { traces: 0, calls: 0, programsSent: 0 };
  const name = opts.name ?? (fn.name ? `jit(${fn.name})` : "jit(fn)");

  const lookup = (session: Session, args: A): { entry: Entry; dynamic: (NDArray | DeviceArrayT)[] } => {
    const { leaves, treedef } = flatten(args);
    const dynamic: (NDArray | DeviceArrayT)[] = [];
    const statics: unknown[] = [];
    for (const l of leaves) {
      if (l instanceof NDArray || l instanceof DeviceArray) dynamic.push(l);
      else if (isArray(l)) throw traceError(name, "a tracer was passed to a top-level jit call (tracers only exist inside traced functions)");
      else statics.push(l);
    }
    const avals = `x64=${session.info.x64};${dynamic.map(avalKey).join(";")}`;
    const hit = entries.find((e) => e.avals === avals && treedefEqual(e.argDef, treedef) && e.statics.length === statics.length && e.statics.every((s, i) => staticValueEqual(s, statics[i])));
    if (hit) return { entry: hit, dynamic };
    const entry = traceJit(fn, name, session.info.x64, treedef, leaves, avals);
    stats.traces++;
    entries.push(entry);
    return { entry, dynamic };
  };

  const call = async (...args: A): Promise<unknown> => {
    if (currentTrace() !== undefined) return fn(...args);
    const session = opts.session ?? getDefaultSession();
    stats.calls++;
    const { entry, dynamic } = lookup(session, args);
    const captures: Concrete[] = [];
    for (const [i, c] of entry.traced.captures.entries()) {
      if (c instanceof NDArray) {
        let d = entry.placed.get(i);
        if (!d || d.disposed || d.owner !== session) {
          d = (await session.put(c)) as DeviceArrayT;
          entry.placed.set(i, d);
        }
        captures.push(d);
      } else captures.push(c);
    }
    const result = await runProgram(session, { hash: entry.traced.hash, bytes: entry.traced.bytes, captures }, dynamic);
    if (result.sentProgram) stats.programsSent++;
    const leaves = entry.outLeaves.map((l) => ("output" in l ? result.outputs[l.output] : l.value));
    return unflatten(entry.outDef, leaves);
  };
  Object.defineProperty(call, "stats", { value: stats, enumerable: true });
  Object.defineProperty(call, "signatures", { get: () => entries.length, enumerable: true });
  return call as Jitted<A, unknown>;
}

function traceJit<A extends unknown[], R>(fn: (...args: A) => R, name: string, x64: boolean, argDef: TreeDef, leaves: unknown[], avals: string): Entry {
  const trace = new Trace(null, name, x64);
  let outDef!: TreeDef;
  const outLeaves: Entry["outLeaves"] = [];
  const statics = leaves.filter((l) => !(l instanceof NDArray || l instanceof DeviceArray));
  const sub = trace.run(() => {
    const traced = leaves.map((l) => (l instanceof NDArray || l instanceof DeviceArray ? trace.newInput({ dtype: l.dtype, shape: [...l.shape] }) : l));
    const out = fn(...(unflatten(argDef, traced) as A));
    const flat = flatten(out);
    outDef = flat.treedef;
    const outs: Tracer[] = [];
    for (const leaf of flat.leaves) {
      if (leaf instanceof Tracer || isConcrete(leaf)) {
        outLeaves.push({ output: outs.length });
        outs.push(leaf instanceof Tracer ? leaf : asTracer("output", leaf));
      } else outLeaves.push({ value: leaf });
    }
    trace.close(outs);
    return trace.toProgram("inputs-first");
  });
  const program: Program = { version: IR_VERSION, x64, inputs: sub.inputs, eqns: sub.eqns, outputs: sub.outputs };
  const bytes = encodeProgram(program);
  const traced: Traced = {
    program,
    bytes,
    hash: sha256Hex(bytes),
    captures: trace.captures.map((c) => c.outer as Concrete),
    inputs: program.inputs,
    outputs: [],
  };
  return { argDef, statics, avals, traced, outDef, outLeaves, placed: new Map() };
}
