import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { sidecarPython } from "../../../src/wire/python-env.js";
import { NDArray } from "../../../src/values/ndarray.js";
import type { DType } from "../../../src/values/dtype.js";
import { dtypeInfo } from "../../../src/values/dtype.js";
import { traceFlat, type FlatOut, type Traced } from "../../../src/trace/trace.js";
import type { Tracer } from "../../../src/trace/tracer.js";

const HERE = dirname(fileURLToPath(import.meta.url));

export interface WireArray {
  dtype: DType;
  shape: number[];
  b64: string;
}

export function toWire(a: NDArray): WireArray {
  return { dtype: a.dtype, shape: [...a.shape], b64: Buffer.from(a.bytes()).toString("base64") };
}

export function fromWire(w: WireArray): NDArray {
  const buf = Buffer.from(w.b64, "base64");
  const info = dtypeInfo(w.dtype);
  const copy = new Uint8Array(buf.length);
  copy.set(buf);
  const data = new info.ctor(copy.buffer, 0, buf.length / info.ctor.BYTES_PER_ELEMENT);
  return new NDArray(data, w.shape, w.dtype);
}

interface Reply {
  id: number;
  ok: boolean;
  error?: string;
  traceback?: string;
  mismatch?: string;
  result?: unknown;
  ours?: WireArray[];
  traces?: number;
  leaves?: (WireArray | { static: unknown })[];
  structure?: string;
}

/** A pytree computed in Python: its leaves in jax.tree order (arrays decoded), or the error it raised. */
export type TreeReply = { ok: true; leaves: (NDArray | { static: unknown })[]; structure: string } | { ok: false; error: string };

/**
 * One Python process (per x64 mode) that lowers our programs with lower.py
 * and runs the hand-written JAX equivalent, comparing bit for bit.
 */
export class Oracle {
  #procs = new Map<boolean, { child: ChildProcessWithoutNullStreams; pending: Map<number, (r: Reply) => void>; stderr: string[] }>();
  #next = 1;
  readonly #env: Record<string, string>;

  /**
   * `leraxUtils`: the path of lerax's own utils.py, loaded as `lerax_utils` in the Python namespace.
   * `numCpuDevices`: the oracle's JAX gets that many CPU devices (meshes, shard_map).
   */
  constructor(opts: { leraxUtils?: string; numCpuDevices?: number } = {}) {
    this.#env = {
      ...(opts.numCpuDevices ? { ORACLE_CPU_DEVICES: String(opts.numCpuDevices) } : {}),
      ...(opts.leraxUtils ? { ORACLE_LERAX_UTILS: opts.leraxUtils } : {}),
    };
  }

  #proc(x64: boolean) {
    let p = this.#procs.get(x64);
    if (p) return p;
    const child = spawn(sidecarPython(), [join(HERE, "oracle.py")], {
      env: { ...process.env, ORACLE_X64: x64 ? "1" : "0", JAX_PLATFORMS: "cpu", PYTHONUNBUFFERED: "1", ...this.#env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const pending = new Map<number, (r: Reply) => void>();
    const stderr: string[] = [];
    createInterface({ input: child.stdout }).on("line", (line) => {
      let r: Reply;
      try {
        r = JSON.parse(line) as Reply;
      } catch {
        stderr.push(line);
        return;
      }
      const cb = pending.get(r.id);
      pending.delete(r.id);
      cb?.(r);
    });
    child.stderr.on("data", (d) => {
      stderr.push(String(d));
      if (stderr.length > 200) stderr.shift();
    });
    child.on("exit", (code) => {
      for (const cb of pending.values()) cb({ id: -1, ok: false, error: `oracle process exited ${code}: ${stderr.join("").slice(-3000)}` });
      pending.clear();
    });
    p = { child, pending, stderr };
    this.#procs.set(x64, p);
    return p;
  }

  request(x64: boolean, req: Record<string, unknown>): Promise<Reply> {
    const p = this.#proc(x64);
    const id = this.#next++;
    return new Promise((resolve) => {
      p.pending.set(id, resolve);
      p.child.stdin.write(JSON.stringify({ ...req, id }) + "\n");
    });
  }

  /** Run Python code (which sets `result`) in the oracle process; `args` are NDArrays. */
  async exec<T = unknown>(x64: boolean, code: string, args: NDArray[] = []): Promise<T> {
    const r = await this.request(x64, { exec: code, args: args.map(toWire) });
    if (!r.ok) throw new Error(`${r.error}\n${r.traceback ?? ""}`);
    return r.result as T;
  }

  /** Run Python code that sets `result` to a pytree; returns its leaves (or the exception it raised). */
  async execTree(x64: boolean, code: string, args: NDArray[] = []): Promise<TreeReply> {
    const r = await this.request(x64, { exec: code, args: args.map(toWire), tree: true });
    if (!r.ok) return { ok: false, error: r.error ?? "unknown error" };
    return { ok: true, leaves: (r.leaves ?? []).map((l) => ("static" in l ? l : fromWire(l))), structure: r.structure ?? "" };
  }

  /**
   * Trace `fn` on `args`' types, run it through lower.py and `oracle` (Python
   * source of a function of the same arrays) through jax.jit, and compare.
   * Returns null when they agree, else a description of the difference.
   */
  async compare(fn: (...xs: Tracer[]) => FlatOut | readonly FlatOut[], args: readonly NDArray[], oracle: string, opts: { x64: boolean; tol?: { rtol?: number; atol?: number }; returnOutputs?: boolean; filterJit?: boolean }): Promise<{ mismatch: string | null; traced: Traced; ours?: NDArray[] }> {
    const traced = traceFlat(fn, args.map((a) => ({ dtype: a.dtype, shape: a.shape })), { x64: opts.x64 });
    const captures = traced.captures.map((c) => {
      if (!(c instanceof NDArray)) throw new Error("the oracle can only pass NDArray captures");
      return c;
    });
    const r = await this.request(opts.x64, {
      program: new TextDecoder().decode(traced.bytes),
      args: [...args, ...captures].map(toWire),
      oracle,
      oracle_nargs: args.length,
      tol: opts.tol,
      return: opts.returnOutputs ?? false,
      filter_jit: opts.filterJit ?? false,
    });
    if (!r.ok) return { mismatch: `error: ${r.error}\n${r.traceback ?? ""}`, traced };
    return { mismatch: r.mismatch ?? null, traced, ours: r.ours?.map(fromWire) };
  }

  /**
   * Compare outputs computed elsewhere (eager ops on the sidecar) with
   * `oracle` (Python source of a function of `args`) run op by op by
   * jax.numpy, without jax.jit. Returns null when they agree.
   */
  async compareEager(ours: readonly NDArray[], args: readonly NDArray[], oracle: string, opts: { x64: boolean; tol?: { rtol?: number; atol?: number } | undefined }): Promise<string | null> {
    const r = await this.request(opts.x64, { ours: ours.map(toWire), eager: true, args: args.map(toWire), oracle, tol: opts.tol });
    if (!r.ok) return `error: ${r.error}\n${r.traceback ?? ""}`;
    return r.mismatch ?? null;
  }

  close(): void {
    for (const p of this.#procs.values()) p.child.stdin.end();
    this.#procs.clear();
  }
}

// --- deterministic random inputs ---------------------------------------------------

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

export function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int8: [-128, 127],
  int16: [-1000, 1000],
  int32: [-100000, 100000],
  int64: [-100000, 100000],
  uint8: [0, 255],
  uint16: [0, 2000],
  uint32: [0, 200000],
  uint64: [0, 200000],
};

/** A random host array; floats include some specials (0, -0, ±inf, nan) when `specials`. */
export function randomArray(r: () => number, dtype: DType, shape: readonly number[], opts: { specials?: boolean; positive?: boolean; lo?: number; hi?: number } = {}): NDArray {
  const n = shape.reduce((a, b) => a * b, 1);
  const values: (number | bigint | boolean)[] = [];
  for (let i = 0; i < n; i++) {
    if (dtype === "bool") values.push(r() < 0.5);
    else if (INT_RANGE[dtype]) {
      let [lo, hi] = INT_RANGE[dtype]!;
      if (opts.lo !== undefined) lo = Math.max(lo, opts.lo);
      if (opts.hi !== undefined) hi = Math.min(hi, opts.hi);
      if (opts.positive) lo = Math.max(lo, 1);
      const v = randInt(r, lo, hi);
      values.push(dtype === "int64" || dtype === "uint64" ? BigInt(v) : v);
    } else {
      const u = r();
      let v: number;
      if (opts.specials && u < 0.08) v = pick(r, [0, -0, Infinity, -Infinity, NaN, 1e-30, -1e30]);
      else {
        const lo = opts.lo ?? (opts.positive ? 0.05 : -4);
        const hi = opts.hi ?? 4;
        v = lo + (hi - lo) * r();
      }
      values.push(v);
    }
  }
  return hostArrayOf(values, dtype, shape);
}

import { array as hostArray } from "../../../src/values/ndarray.js";
function hostArrayOf(values: (number | bigint | boolean)[], dtype: DType, shape: readonly number[]): NDArray {
  return hostArray(values as never, dtype, shape);
}
