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
