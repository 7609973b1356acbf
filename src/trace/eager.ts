/**
 * Eager operations: a jnp / lax / nn / random call (or an array method) made
 * outside any traced function, on DeviceArrays, NDArrays and numbers. It is
 * traced on the spot into a one-op Program, so its result's dtype and shape
 * are known here at once and a shape error throws at the call site, as
 * inside a trace; the program is sent to the sidecar with client-chosen
 * output ids and the result is returned without waiting (JAX's
 * asynchronous dispatch). See docs/protocol.md "Client-chosen handles".
 *
 * - Programs are cached by op, static arguments and input types, so a
 *   repeated op neither traces nor hashes again; the body goes to a sidecar
 *   once, then only its hash (jit.ts's `programsHeld`).
 * - The request leaves at once, behind the ones before it; a result whose
 *   request is still on its way is a pending DeviceArray, usable as an
 *   argument at once, so `x.mul(2).add(1).sum()` costs no round trip until
 *   it is read.
 * - A failed request poisons its ids on the sidecar: the arrays computed
 *   from its results fail with its error, and awaiting any of them rejects.
 */

import { DeviceArray } from "../values/device-array.js";
import { NDArray } from "../values/ndarray.js";
import { isPlainObject } from "../values/describe.js";
import { flatten, type TreeDef, unflatten } from "../values/tree.js";
import { getDefaultSession, resolveSession, Session } from "../session/session.js";
import { asTracer, type Concrete, isConcrete, Trace } from "./core.js";
import { encodeProgram, IR_VERSION, type Program, sha256Hex } from "./ir.js";
import { Tracer } from "./tracer.js";
import { JaxBridgeError, SidecarError } from "../values/errors.js";
import { programsHeld } from "./jit.js";

interface Entry {
  readonly hash: string;
  readonly bytes: Uint8Array;
  /** Arrays the op made itself (from nested JS lists): inputs after the arguments'. */
  readonly captures: readonly Concrete[];
  readonly outs: readonly { readonly dtype: DeviceArray["dtype"]; readonly shape: readonly number[]; readonly weak: boolean }[];
  readonly outDef: TreeDef;
  /** Output leaves: an index into the program outputs, or a static value. */
  readonly outLeaves: readonly ({ output: number } | { value: unknown })[];
}

/** Entries kept (least recently used dropped beyond): a program per op, argument types and static arguments. */
const CACHE_ENTRIES = 4096;
const cache = new Map<string, Entry>();

/** Counters for tests and the bench: ops dispatched, traced (cache misses), and calls that could not be cached. */
export const eagerStats = { ops: 0, traces: 0, uncached: 0 };

/** Clear the eager program cache (tests). */
export function clearEagerCache(): void {
  cache.clear();
}

/**
 * Run `fn(...args)` eagerly: `name` names the op for the cache and for
 * messages (`jnp.add`, `x.sum`). Array leaves of the result become
 * DeviceArrays; everything else is returned as `fn` returned it.
 */
export function eagerCall(name: string, fn: (...args: never[]) => unknown, args: readonly unknown[]): unknown {
  const inputs: Concrete[] = [];
  const seen = new Map<object, number>();
  let session: Session | undefined;
  let device: string | undefined;
  let bad = false;
  let key: string | null = name;

  // One walk over the arguments: the cache key, the concrete arrays (each once, in order), their session.
  const visit = (v: unknown): string | null => {
    switch (typeof v) {
      case "number":
        return Object.is(v, -0) ? "n-0" : `n${v}`;
      case "boolean":
        return v ? "T" : "F";
      case "string":
        return `s${JSON.stringify(v)}`;
      case "bigint":
        return `b${v}`;
      case "undefined":
        return "u";
      case "object":
        break;
      default:
        return null;
    }
    if (v === null) return "z";
    if (v instanceof DeviceArray || v instanceof NDArray) {
      let k = seen.get(v);
      if (k === undefined) {
        k = inputs.length;
        seen.set(v, k);
        inputs.push(v);
        if (v instanceof DeviceArray) {
          if (v.disposed || (session !== undefined && v.owner !== session) || !(v.owner instanceof Session)) bad = true;
          else if (session === undefined) session = v.owner;
          device = device === undefined || device === v.device ? v.device : "";
        }
      }
      return `A${k}:${v.dtype}[${v.shape.join(",")}]${v instanceof DeviceArray && v.weak ? "w" : ""}`;
    }
    if (Array.isArray(v)) {
      let s = "[";
      for (const x of v) {
        const k = visit(x);
        if (k === null) return null;
        s += k + ",";
      }
      return s + "]";
    }
    if (isPlainObject(v)) {
      let s = "{";
      for (const k of Object.keys(v).sort()) {
        const x = visit((v as Record<string, unknown>)[k]);
        if (x === null) return null;
        s += `${JSON.stringify(k)}:${x},`;
      }
      return s + "}";
    }
    return null;
  };
  for (const a of args) {
    const k = visit(a);
    if (k === null) {
      key = null;
      break;
    }
    key += "|" + k;
  }
  // A disposed array, or arrays of two sessions: the session layer names the leaf and says what to do.
  if (bad) resolveSession(name, args as unknown[]);
  const owner = session ?? defaultSessionFor(name);
  const x64 = owner.info.x64;
  if (key !== null) key = `${x64 ? "1" : "0"}|${key}`;

  let entry = key === null ? undefined : cache.get(key);
  if (entry !== undefined) {
    cache.delete(key!);
    cache.set(key!, entry);
  } else {
    entry = traceOp(name, fn, args, inputs, x64);
    eagerStats.traces++;
    // Captured DeviceArrays came from something the key cannot see (a closure): never reuse that program.
    if (key !== null && !entry.captures.some((c) => c instanceof DeviceArray)) {
      cache.set(key, entry);
      if (cache.size > CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    } else eagerStats.uncached++;
  }
  if (entry.outs.length === 0) return unflatten(entry.outDef, entry.outLeaves.map((l) => ("value" in l ? l.value : undefined)));

  eagerStats.ops++;
  const held = programsHeld(owner);
  const sendBody = !held.has(entry.hash);
  const ids = owner.newHandleIds(entry.outs.length);
  const hash = entry.hash;
  const produced = owner.dispatch("run", { hash, ...(sendBody ? { program: entry.bytes } : {}), args: [...inputs, ...entry.captures], out: ids, ready: false });
  if (sendBody) {
    held.add(hash);
    // If the sidecar did not take the program, the next call sends it again.
    produced.catch((e: unknown) => {
      if (e instanceof SidecarError) held.delete(hash);
    });
  }
  const where = device || owner.info.devices[0]?.str || "";
  const arrays = entry.outs.map((o, k) => new DeviceArray(owner, ids[k]!, o.dtype, o.shape, where, undefined, { weak: o.weak, produced }));
  return unflatten(
    entry.outDef,
    entry.outLeaves.map((l) => ("output" in l ? arrays[l.output] : l.value)),
  );
}

/** The default session, or an error saying that an op outside a trace runs on one. */
function defaultSessionFor(name: string): Session {
  try {
    return getDefaultSession();
  } catch (e) {
    throw new JaxBridgeError(
      `${name} was called outside a traced function, where operations run at once on a sidecar, and there is no open session: ` +
        "call `await connect()` first (or call it inside jit, filterCond or filterScan, where it builds a program)",
      { cause: e },
    );
  }
}

/** Trace `fn` on the arguments with each concrete array replaced by an input tracer. */
function traceOp(name: string, fn: (...args: never[]) => unknown, args: readonly unknown[], inputs: readonly Concrete[], x64: boolean): Entry {
  const trace = new Trace(null, name, x64);
  let outDef!: TreeDef;
  const outLeaves: Entry["outLeaves"][number][] = [];
  const outs: Tracer[] = [];
  const sub = trace.run(() => {
    const tracers = new Map<unknown, Tracer>();
    for (const c of inputs) tracers.set(c, trace.newInput({ dtype: c.dtype, shape: [...c.shape] }, c instanceof DeviceArray && c.weak));
    const swap = (v: unknown): unknown => {
      if (v instanceof DeviceArray || v instanceof NDArray) return tracers.get(v) ?? v;
      if (Array.isArray(v)) return v.map(swap);
      if (isPlainObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, swap(x)]));
      return v;
    };
    const out = fn(...(args.map(swap) as never[]));
    const flat = flatten(out);
    outDef = flat.treedef;
    for (const leaf of flat.leaves) {
      if (leaf instanceof Tracer || isConcrete(leaf)) {
        outLeaves.push({ output: outs.length });
        outs.push(leaf instanceof Tracer ? leaf : asTracer(name, leaf));
      } else outLeaves.push({ value: leaf });
    }
    trace.close(outs);
    return trace.toProgram("inputs-first");
  });
  const program: Program = { version: IR_VERSION, x64, inputs: sub.inputs, eqns: sub.eqns, outputs: sub.outputs };
  const bytes = encodeProgram(program);
  return {
    hash: sha256Hex(bytes),
    bytes,
    captures: trace.captures.map((c) => c.outer as Concrete),
    outs: outs.map((t) => ({ dtype: t.dtype, shape: t.shape, weak: t.weak })),
    outDef,
    outLeaves,
  };
}
