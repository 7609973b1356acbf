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

import type { DeviceArray as DeviceArrayT } from "../values/device-array.js";
import { NDArray } from "../values/ndarray.js";
import { BridgeInputError, SidecarError } from "../values/errors.js";
import type { RequestOptions } from "../session/session.js";
import { getDefaultSession, resolveSession, Session } from "../session/session.js";
import { flatten, flattenWithPath, isArray, keystr, staticValueEqual, type TreeDef, treedefEqual, unflatten } from "../values/tree.js";
import { NamedSharding, type WireSharding } from "../values/sharding.js";
import { prefixLeaves } from "../values/prefix.js";
import type { HostCallback } from "../session/callback-events.js";
import { asTracer, type Concrete, currentTrace, isArrayLeaf, isConcrete, Trace } from "./core.js";
import { encodeProgram, IR_VERSION, type Program, sha256Hex } from "./ir.js";
import { Tracer } from "./tracer.js";
import { traceError } from "./errors.js";
import type { Traced } from "./trace.js";
import type { ProgramStats } from "../wire/ops.js";
import { PyShapesNeeded, resolvePyShapes } from "./pycall-shapes.js";
import type { ArgTree, DeviceResult, HostResult } from "./types.js";

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

/**
 * The programs a sidecar holds, as far as this client knows: the hashes it
 * sent, most recently used last. The sidecar evicts its least recently used
 * programs beyond its capacity (512, program/cache.py); remembering fewer
 * (and touching a hash on every use, as every run touches it there) keeps
 * every hash listed here held there, as long as this client is the
 * sidecar's only one. That matters for eager ops, which send the hash
 * alone without waiting; jit also recovers from `UnknownProgram` by
 * sending the body again.
 */
export class HeldPrograms {
  static readonly CAPACITY = 256;
  readonly #hashes = new Set<string>();
  /** Whether the sidecar holds `hash` (and mark it used). */
  has(hash: string): boolean {
    if (!this.#hashes.delete(hash)) return false;
    this.#hashes.add(hash);
    return true;
  }
  add(hash: string): void {
    this.#hashes.delete(hash);
    this.#hashes.add(hash);
    if (this.#hashes.size > HeldPrograms.CAPACITY) this.#hashes.delete(this.#hashes.values().next().value!);
  }
  delete(hash: string): void {
    this.#hashes.delete(hash);
  }
}

const heldBySession = new WeakMap<Session, { instance: string; hashes: HeldPrograms }>();

/** What `session`'s sidecar holds (a fresh table when it restarted). */
export function programsHeld(session: Session): HeldPrograms {
  let h = heldBySession.get(session);
  if (!h || h.instance !== session.instance) {
    h = { instance: session.instance, hashes: new HeldPrograms() };
    heldBySession.set(session, h);
  }
  return h.hashes;
}

/**
 * Run a traced program with its array arguments (captures are appended
 * here). Sends the body only when the sidecar may not hold it.
 */
export async function runProgram(session: Session, traced: Pick<Traced, "hash" | "bytes" | "captures"> & { callbacks?: readonly HostCallback[] | undefined }, args: readonly (NDArray | DeviceArrayT)[], opts: RunOptions = {}): Promise<RunResult> {
  const hashes = programsHeld(session);
  const all = [...args, ...traced.captures];
  const send = async (withBody: boolean) => {
    const fields = { hash: traced.hash, args: all, fetch: opts.fetch === true, ...(withBody ? { program: traced.bytes } : {}) };
    return session.request("run", fields, { signal: opts.signal, timeoutMs: opts.timeoutMs, callbacks: traced.callbacks });
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
  return { outputs: reply.outputs ?? [], sentProgram, lowered: reply.lowered, traced: reply.traced };
}

export type { ProgramStats } from "../wire/ops.js";

/** The sidecar's program cache counters: programs held, cache hits and misses, lowerings, JAX traces. */
export async function programStats(session: Session = getDefaultSession(), opts: RequestOptions = {}): Promise<ProgramStats> {
  return session.request("program_stats", {}, opts);
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
  /** The session to run on (default: the one owning the DeviceArray arguments, else the default session). */
  session?: Session;
  name?: string;
  /** Resolve to host arrays (NDArray) instead of DeviceArrays. */
  fetch?: boolean;
  /**
   * `jax.jit`'s `in_shardings`: a NamedSharding for every argument, or a
   * tree prefix of the argument list (`[rowSharding, replicated]` for
   * `(x, params)`); null leaves an argument unspecified (it keeps its own
   * sharding). Host arrays are placed so; a device array already placed
   * otherwise is JAX's error, not a silent reshard.
   */
  inShardings?: unknown;
  /** `jax.jit`'s `out_shardings`: a NamedSharding for every output, or a tree prefix of the output (null: the compiler's choice). */
  outShardings?: unknown;
}

/** Per-call options of a jitted function (`jitted.withOptions({...})(...args)`). */
export interface JitCallOptions extends RequestOptions {
  session?: Session;
  fetch?: boolean;
}

export interface JitStats {
  /** Times `fn` was traced (once per signature). */
  traces: number;
  /** Top-level calls answered from the TypeScript cache: `fn` was not called. */
  hits: number;
  /** Top-level calls made. */
  calls: number;
  /** Calls that sent the program body (the others sent only its hash). */
  programsSent: number;
}

/** A jitted function: `A` are the arguments a caller passes, `R` what a call resolves to. */
export type Jitted<A extends unknown[], R> = ((...args: A) => Promise<R>) & {
  readonly stats: JitStats;
  readonly signatures: number;
  /** The traced programs, one per signature (for tests and debugging). */
  readonly programs: readonly Traced[];
  /** The same function with per-call options (session, fetch, signal, deadline); `fetch: true` resolves to NDArrays. */
  withOptions(opts: JitCallOptions & { fetch: true }): (...args: A) => Promise<HostResult<R>>;
  withOptions(opts: JitCallOptions & { fetch: false }): (...args: A) => Promise<DeviceResult<R>>;
  withOptions(opts: JitCallOptions): (...args: A) => Promise<R>;
};

/** The arguments of a jitted `fn`: any array where `fn` takes a Tracer (ArgTree). */
export type JitArgs<A extends unknown[]> = { [K in keyof A]: ArgTree<A[K]> };

/** Distinct Python calls one trace may discover (each costs a round trip and a retrace). */
const MAX_PYCALL_ROUNDS = 256;

const avalKey = (x: NDArray | DeviceArrayT): string => `${x.dtype}[${x.shape.join(",")}]`;

/**
 * `jit(fn)`: trace `fn` once per signature into a Program and run it on the
 * sidecar. Array leaves of the arguments (NDArray, DeviceArray) are traced;
 * every other leaf is static (part of the signature). The same array object
 * at several leaves is one program input, sent once. Returns a function
 * whose calls resolve to `fn`'s output tree with DeviceArrays for array
 * leaves (NDArrays with `{fetch: true}`); static outputs stay here.
 *
 * Inside a traced function a jitted function just calls `fn` (inlined, as
 * nested jit is in JAX) and returns its result directly.
 */
export function jit<A extends unknown[], R>(fn: (...args: A) => R, opts: JitOptions & { fetch: true }): Jitted<JitArgs<A>, HostResult<R>>;
export function jit<A extends unknown[], R>(fn: (...args: A) => R, opts?: JitOptions): Jitted<JitArgs<A>, DeviceResult<R>>;
export function jit<A extends unknown[], R>(fn: (...args: A) => R, opts: JitOptions = {}): Jitted<JitArgs<A>, DeviceResult<R> | HostResult<R>> {
  const entries: Entry[] = [];
  const stats: JitStats = { traces: 0, hits: 0, calls: 0, programsSent: 0 };
  const name = opts.name ?? (fn.name ? `jit(${fn.name})` : "jit(fn)");

  const lookup = (session: Session, args: A): { entry: Entry; dynamic: (NDArray | DeviceArrayT)[] } => {
    const { leaves, treedef } = flatten(args);
    const dynamic: (NDArray | DeviceArrayT)[] = [];
    const slots: number[] = [];
    const statics: unknown[] = [];
    const seen = new Map<object, number>();
    let avals = `x64=${session.info.x64}`;
    for (const l of leaves) {
      if (isConcrete(l)) {
        let k = seen.get(l);
        if (k === undefined) {
          k = dynamic.length;
          seen.set(l, k);
          dynamic.push(l);
          avals += `;${avalKey(l)}`;
        } else avals += `;=${k}`;
        slots.push(k);
      } else if (isArray(l)) throw traceError(name, "a tracer was passed to a top-level jit call (tracers only exist inside traced functions)");
      else {
        statics.push(l);
        slots.push(-1);
      }
    }
    const hit = entries.find((e) => e.avals === avals && treedefEqual(e.argDef, treedef) && e.statics.length === statics.length && e.statics.every((s, i) => staticValueEqual(s, statics[i])));
    if (hit) {
      stats.hits++;
      return { entry: hit, dynamic };
    }
    const entry = traceJit(fn, name, session.info.x64, treedef, leaves, slots, dynamic, statics, avals, opts);
    stats.traces++;
    entries.push(entry);
    return { entry, dynamic };
  };

  // A trace that calls Python (pyCall) stops at the first call whose output
  // types are unknown; ask the sidecar and trace again, once per new call.
  const lookupResolvingPyShapes = async (session: Session, args: A, o: JitCallOptions): Promise<ReturnType<typeof lookup>> => {
    for (let round = 0; ; round++) {
      try {
        return lookup(session, args);
      } catch (e) {
        if (!(e instanceof PyShapesNeeded) || round >= MAX_PYCALL_ROUNDS) throw e;
        await resolvePyShapes(session, e, { signal: o.signal, timeoutMs: o.timeoutMs });
      }
    }
  };

  const run = async (o: JitCallOptions, args: A): Promise<unknown> => {
    stats.calls++;
    const session = resolveSession(name, args, o.session ?? opts.session);
    const { entry, dynamic } = await lookupResolvingPyShapes(session, args, o);
    const captures: Concrete[] = [];
    for (const [i, c] of entry.traced.captures.entries()) {
      if (c instanceof NDArray) {
        let d = entry.placed.get(i);
        if (!d || d.disposed || d.owner !== session) {
          d = (await session.put(c, o)) as DeviceArrayT;
          entry.placed.set(i, d);
        }
        captures.push(d);
      } else {
        if (c.owner !== session) {
          throw new BridgeInputError(`${name}: the function captures ${c.toString()}, which belongs to sidecar ${c.owner.instance || "(closed)"}, but this call runs on sidecar ${session.instance}`);
        }
        captures.push(c);
      }
    }
    const fetch = o.fetch ?? opts.fetch ?? false;
    const result = await runProgram(session, { hash: entry.traced.hash, bytes: entry.traced.bytes, captures, callbacks: entry.traced.callbacks }, dynamic, { fetch, signal: o.signal, timeoutMs: o.timeoutMs });
    if (result.sentProgram) stats.programsSent++;
    const leaves = entry.outLeaves.map((l) => ("output" in l ? result.outputs[l.output] : l.value));
    return unflatten(entry.outDef, leaves);
  };
  const bound = (o: JitCallOptions) => (...args: A): Promise<unknown> => {
    // Inside a trace: inline (the result is fn's, not a promise).
    if (currentTrace() !== undefined) return fn(...args) as unknown as Promise<unknown>;
    return run(o, args);
  };
  const call = bound({});
  Object.defineProperty(call, "stats", { value: stats, enumerable: true });
  Object.defineProperty(call, "signatures", { get: () => entries.length, enumerable: true });
  Object.defineProperty(call, "programs", { get: () => entries.map((e) => e.traced), enumerable: false });
  Object.defineProperty(call, "withOptions", { value: (o: JitCallOptions) => bound(o), enumerable: false });
  return call as unknown as Jitted<JitArgs<A>, DeviceResult<R>>;
}

function traceJit<A extends unknown[], R>(
  fn: (...args: A) => R,
  name: string,
  x64: boolean,
  argDef: TreeDef,
  leaves: unknown[],
  slots: readonly number[],
  dynamic: readonly (NDArray | DeviceArrayT)[],
  statics: unknown[],
  avals: string,
  shardings: Pick<JitOptions, "inShardings" | "outShardings"> = {},
): Entry {
  const inShardings = shardings.inShardings === undefined ? undefined : inputShardings(name, shardings.inShardings, unflatten(argDef, leaves), slots, dynamic);
  let outShardings: (WireSharding | null)[] | undefined;
  const trace = new Trace(null, name, x64);
  let outDef!: TreeDef;
  const outLeaves: Entry["outLeaves"] = [];
  const sub = trace.run(() => {
    const inputs = dynamic.map((l) => trace.newInput({ dtype: l.dtype, shape: [...l.shape] }));
    const traced = leaves.map((l, i) => (slots[i]! >= 0 ? inputs[slots[i]!] : l));
    const out = fn(...(unflatten(argDef, traced) as A));
    const flat = flatten(out);
    outDef = flat.treedef;
    const outs: Tracer[] = [];
    for (const leaf of flat.leaves) {
      if (isArrayLeaf(leaf)) {
        outLeaves.push({ output: outs.length });
        outs.push(leaf instanceof Tracer ? leaf : asTracer("output", leaf));
      } else outLeaves.push({ value: leaf });
    }
    if (shardings.outShardings !== undefined) outShardings = outputShardings(name, shardings.outShardings, out, outLeaves, outs);
    trace.close(outs);
    return trace.toProgram("inputs-first");
  });
  const program: Program = { version: IR_VERSION, x64, inputs: sub.inputs, eqns: sub.eqns, outputs: sub.outputs, in_shardings: inShardings, out_shardings: outShardings };
  const bytes = encodeProgram(program);
  const traced: Traced = {
    program,
    bytes,
    hash: sha256Hex(bytes),
    captures: trace.captures.map((c) => c.outer as Concrete),
    inputs: program.inputs,
    outputs: [],
    callbacks: trace.callbacks,
    keep: [...trace.keep],
  };
  return { argDef, statics, avals, traced, outDef, outLeaves, placed: new Map() };
}

// --- jit's shardings ---------------------------------------------------------------------

const isNamed = (x: unknown): x is NamedSharding => x instanceof NamedSharding;

function checkFits(name: string, s: NamedSharding, shape: readonly number[], where: string): void {
  try {
    s.shardShape(shape);
  } catch (e) {
    throw traceError(name, `${where}: ${(e as Error).message}`);
  }
}

/** One sharding per program input: the arguments' prefix spread over their array leaves (one array at two leaves must get one sharding). */
function inputShardings(name: string, prefix: unknown, args: unknown, slots: readonly number[], dynamic: readonly (NDArray | DeviceArrayT)[]): (WireSharding | null)[] {
  const per = prefixLeaves(prefix, args, isNamed, "inShardings", "NamedSharding");
  const paths = flattenWithPath(args).leaves.map((l) => `args${keystr(l.path)}`);
  const chosen: (NamedSharding | null | undefined)[] = dynamic.map(() => undefined);
  const from: string[] = [];
  per.forEach((s, i) => {
    const k = slots[i]!;
    if (k < 0) return;
    if (s !== null) checkFits(name, s, dynamic[k]!.shape, `inShardings for ${paths[i]}`);
    const before = chosen[k];
    if (before === undefined) {
      chosen[k] = s;
      from[k] = paths[i]!;
    } else if (before === null ? s !== null : s === null || !before.equals(s)) {
      throw traceError(name, `${paths[i]} is the same array as ${from[k]}, but inShardings gives them ${s ?? "null"} and ${before ?? "null"}: one program input has one sharding`);
    }
  });
  return chosen.map((s) => (s ? s.toWire() : null));
}

/** One sharding per program output, from the prefix over the output tree. */
function outputShardings(name: string, prefix: unknown, out: unknown, outLeaves: Entry["outLeaves"], outs: readonly Tracer[]): (WireSharding | null)[] {
  const per = prefixLeaves(prefix, out, isNamed, "outShardings", "NamedSharding");
  const paths = flattenWithPath(out).leaves.map((l) => `output${keystr(l.path)}`);
  const result: (WireSharding | null)[] = outs.map(() => null);
  outLeaves.forEach((l, i) => {
    if (!("output" in l)) return;
    const s = per[i];
    if (s === null || s === undefined) return;
    checkFits(name, s, outs[l.output]!.shape, `outShardings for ${paths[i]}`);
    result[l.output] = s.toWire();
  });
  return result;
}
