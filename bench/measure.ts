import type { RequestOptions, Session } from "../src/index.js";
/** Timing helpers: warm up, repeat, report the median (robust to GC pauses). */

export interface Timing {
  medianUs: number;
  p10Us: number;
  p90Us: number;
  runs: number;
}

export async function time(fn: () => Promise<unknown>, opts: { warmup?: number; runs?: number; maxMs?: number } = {}): Promise<Timing> {
  const warmup = opts.warmup ?? 3;
  const runs = opts.runs ?? 30;
  const maxMs = opts.maxMs ?? 20_000;
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    samples.push((performance.now() - t0) * 1000);
    if (performance.now() - start > maxMs && samples.length >= 3) break;
  }
  samples.sort((a, b) => a - b);
  const q = (p: number): number => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]!;
  return { medianUs: q(0.5), p10Us: q(0.1), p90Us: q(0.9), runs: samples.length };
}

export function fmtUs(us: number): string {
  if (us < 1000) return `${us.toFixed(1)} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(2)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

export function fmtRatio(r: number): string {
  return r >= 100 ? `${r.toFixed(0)}x` : `${r.toFixed(2)}x`;
}

/** The median of timings taken by hand (the upper one of an even count, as `time` reports it). */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/**
 * Send a benchmark-only op (`bench_lerax_scan`, `bench_module_scan`: a
 * sidecar started with JAXBRIDGE_BENCH_OPS=1 has them, docs/protocol.md
 * "run"). They are not in the protocol's op table (src/wire/ops.ts), so this
 * is the one place that sends an op untyped.
 */
export async function benchOp<T>(session: Session, op: string, fields: Record<string, unknown>, opts: RequestOptions = {}): Promise<T> {
  const untyped = session.request as unknown as (op: string, fields: object, opts: RequestOptions) => Promise<unknown>;
  return (await untyped.call(session, op, fields, opts)) as T;
}
