/**
 * Small line plots in the terminal (asciichart), for 1-d arrays such as a
 * loss curve returned by a scan.
 *
 * Accepts an NDArray or DeviceArray of shape [n] (one series) or [n, k]
 * with k ≤ 8 (k series, one per column), a JS array of numbers or a
 * TypedArray, or a JS array of such series. Longer series are resampled to
 * the terminal's width by averaging each column's bucket; NaN and ±Inf are
 * left out (and counted in the caption).
 */
import asciichart from "asciichart";
import { inspect } from "node:util";
import { DeviceArray } from "../values/device-array.js";
import { NDArray } from "../values/ndarray.js";
import { BridgeInputError } from "../values/errors.js";

export interface PlotOptions {
  /** Rows of the plot (default 10). */
  height?: number;
  /** Columns for the data (default: terminal width less the labels). */
  width?: number;
  /** ANSI colours for the series (default: when the terminal has them). */
  color?: boolean;
}

/** A drawn plot: prints as itself in the REPL, `String(chart)` for the text. */
export class Chart {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
  [inspect.custom](): string {
    return this.text;
  }
}

const MAX_SERIES = 8;
const COLORS = [asciichart.blue, asciichart.green, asciichart.red, asciichart.yellow, asciichart.magenta, asciichart.cyan, asciichart.lightgray, asciichart.default];

/** The series in a host value (DeviceArrays must be fetched first). */
export function toSeries(value: unknown): number[][] {
  if (value instanceof DeviceArray) throw new BridgeInputError("a DeviceArray must be fetched first: `await plot(x)` or `.plot x` fetch it for you");
  if (value instanceof NDArray) {
    if (value.dtype.startsWith("complex")) throw new BridgeInputError(`cannot plot a ${value.dtype} array: plot its real part or magnitude`);
    const num = (i: number) => Number(value.flatItem(i));
    if (value.ndim === 1 || value.ndim === 0) return [Array.from({ length: value.size }, (_, i) => num(i))];
    if (value.ndim === 2 && value.shape[1]! <= MAX_SERIES) {
      const [n, k] = value.shape as [number, number];
      return Array.from({ length: k }, (_, j) => Array.from({ length: n }, (_, i) => num(i * k + j)));
    }
    throw new BridgeInputError(`cannot plot an array of shape [${value.shape.join(", ")}]: give a 1-d array, or [n, k] with k ≤ ${MAX_SERIES} series as columns`);
  }
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return [Array.from(value as unknown as ArrayLike<number | bigint>, Number)];
  if (Array.isArray(value)) {
    if (value.length > 0 && value.every((v) => typeof v === "number" || typeof v === "bigint" || typeof v === "boolean")) return [value.map(Number)];
    if (value.length > 0 && value.length <= MAX_SERIES && value.every((v) => !(typeof v === "number"))) {
      return value.flatMap((v) => toSeries(v));
    }
  }
  throw new BridgeInputError(`cannot plot ${inspect(value, { depth: 0, breakLength: Infinity }).slice(0, 60)}: give a 1-d array or a list of numbers`);
}

/** Draw series (already on the host) as a line chart with a caption. */
export function drawChart(series: number[][], opts: PlotOptions = {}): Chart {
  if (series.length === 0 || series.every((s) => s.length === 0)) return new Chart("(nothing to plot: empty series)");
  const width = Math.max(8, opts.width ?? (process.stdout.columns || 80) - 14);
  const height = Math.max(2, opts.height ?? 10);
  let skipped = 0;
  const longest = series.reduce((m, s) => Math.max(m, s.length), 0);
  const per = Math.max(1, Math.ceil(longest / width));
  const resampled = series.map((s) => {
    const out: number[] = [];
    let last = NaN;
    for (let start = 0; start < s.length; start += per) {
      let sum = 0;
      let count = 0;
      for (let i = start; i < Math.min(start + per, s.length); i++) {
        const v = s[i]!;
        if (Number.isFinite(v)) {
          sum += v;
          count++;
        } else skipped++;
      }
      last = count > 0 ? sum / count : last;
      out.push(last);
    }
    // Leading non-finite buckets take the first finite value.
    const first = out.find((v) => Number.isFinite(v));
    return first === undefined ? [] : out.map((v) => (Number.isFinite(v) ? v : first));
  });
  const drawn = resampled.filter((s) => s.length > 0);
  if (drawn.length === 0) return new Chart(`(nothing to plot: all ${skipped} values are NaN or infinite)`);
  const lo = extent(drawn, Math.min, Infinity);
  const hi = extent(drawn, Math.max, -Infinity);
  const axis = axisLabel(hi - lo, Math.max(Math.abs(lo), Math.abs(hi)));
  const text = asciichart.plot(drawn, {
    height,
    format: (x: number) => axis(x).padStart(10),
    ...(opts.color ? { colors: COLORS.slice(0, drawn.length) } : {}),
  });
  const caption = [
    `n=${longest}${per > 1 ? ` (mean of ${per} per column)` : ""}`,
    `min=${label(extent(series, Math.min, Infinity))}`,
    `max=${label(extent(series, Math.max, -Infinity))}`,
    ...(series.length > 1 ? [`${series.length} series`] : []),
    ...(skipped > 0 ? [`${skipped} non-finite values left out`] : []),
  ].join("  ");
  return new Chart(`${text}\n${" ".repeat(11)}${caption}`);
}

function extent(series: number[][], pick: (a: number, b: number) => number, start: number): number {
  let m = start;
  for (const s of series) for (const v of s) if (Number.isFinite(v)) m = pick(m, v);
  return m;
}

/** Axis labels with as many decimals as the plotted range needs (and 0 for rounding noise). */
function axisLabel(range: number, magnitude: number): (x: number) => string {
  const scientific = magnitude >= 1e6 || (magnitude > 0 && magnitude < 1e-3);
  const decimals = range > 0 ? Math.min(6, Math.max(0, 2 - Math.floor(Math.log10(range)))) : 2;
  return (x) => {
    if (range > 0 ? Math.abs(x) < range * 1e-6 : x === 0) return "0";
    return scientific ? x.toExponential(2) : x.toFixed(decimals);
  };
}

function label(x: number): string {
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-2) return x.toExponential(2);
  return x.toFixed(a >= 100 ? 1 : a >= 10 ? 2 : 3);
}

/** Plot a value; DeviceArrays are fetched first (their session's pending calls wait, as for any fetch). */
export async function plot(value: unknown, opts: PlotOptions & { signal?: AbortSignal } = {}): Promise<Chart> {
  const host = await fetchForPlot(value, opts.signal);
  return drawChart(toSeries(host), opts);
}

async function fetchForPlot(value: unknown, signal: AbortSignal | undefined): Promise<unknown> {
  if (value instanceof DeviceArray) return value.toHost(signal ? { signal } : undefined);
  if (Array.isArray(value) && value.some((v) => v instanceof DeviceArray)) return Promise.all(value.map((v) => fetchForPlot(v, signal)));
  return value;
}
