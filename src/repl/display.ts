/**
 * How values and errors look in the REPL.
 *
 * - NDArrays print as numpy does (their own `inspect.custom`).
 * - A DeviceArray prints its summary, `DeviceArray(float32[3], device=cpu:0)`,
 *   followed by its values in numpy's format when they have been fetched:
 *   the REPL fetches the DeviceArrays of a line's result when they total at
 *   most `AUTO_FETCH_BYTES`; `await show(x)` fetches any size.
 * - Errors from Python print as `Python TypeError: message` with the Python
 *   traceback trimmed to its last frames; other bridge errors print their
 *   name and message without the JavaScript stack (`_error` keeps it all).
 * - Colour only when the output is a colour terminal and NO_COLOR is unset.
 */
import { inspect, type InspectOptionsStylized } from "node:util";
import { DeviceArray } from "../values/device-array.js";
import { NDArray } from "../values/ndarray.js";
import { Module } from "../values/module.js";
import { formatNDArray } from "../values/format.js";
import { JaxBridgeError, SidecarDiedError, SidecarError } from "../values/errors.js";
import { Session } from "../session/session.js";

/** Results whose DeviceArrays total at most this many bytes are fetched for display. */
export const AUTO_FETCH_BYTES = 1 << 20;
/** Python frames shown before the rest are cut. */
export const TRACEBACK_FRAMES = 8;

/** Values fetched for display, by DeviceArray. */
const fetched = new WeakMap<DeviceArray, NDArray>();

export function rememberFetched(a: DeviceArray, host: NDArray): void {
  fetched.set(a, host);
}

/** Should we colour this stream? NO_COLOR (any value) and NODE_DISABLE_COLORS turn colour off. */
export function colorEnabled(stream: NodeJS.WritableStream): boolean {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== "") return false;
  if (process.env.NODE_DISABLE_COLORS !== undefined) return false;
  const tty = stream as NodeJS.WriteStream;
  return tty.isTTY === true && typeof tty.hasColors === "function" && tty.hasColors();
}

export interface Paint {
  red(s: string): string;
  yellow(s: string): string;
  dim(s: string): string;
  bold(s: string): string;
  cyan(s: string): string;
}

export function paint(color: boolean): Paint {
  const wrap = (open: string, close: string) => (s: string) => (color ? `\x1b[${open}m${s}\x1b[${close}m` : s);
  return { red: wrap("31", "39"), yellow: wrap("33", "39"), dim: wrap("2", "22"), bold: wrap("1", "22"), cyan: wrap("36", "39") };
}

/** `DeviceArray(float32[3], device=cpu:0)` */
export function deviceArrayHead(a: DeviceArray): string {
  return `DeviceArray(${a.dtype}[${a.shape.join(", ")}], device=${a.device}${a.disposed ? ", disposed" : ""})`;
}

/**
 * While the REPL runs, DeviceArrays print their fetched values under their
 * summary. Returns a function that restores the library's own printing.
 */
export function installDeviceArrayDisplay(): () => void {
  const proto = DeviceArray.prototype as unknown as Record<symbol, unknown>;
  const original = proto[inspect.custom];
  proto[inspect.custom] = function (this: DeviceArray, _depth: number, options: InspectOptionsStylized): string {
    const head = options.stylize(deviceArrayHead(this), "special");
    const host = this.disposed ? undefined : fetched.get(this);
    if (host) return `${head}\n${formatNDArray(host)}`;
    if (this.disposed) return head;
    return `${head} ${options.stylize(`(${formatBytes(this.nbytes)} not fetched: \`await show(x)\`)`, "undefined")}`;
  };
  return () => {
    proto[inspect.custom] = original;
  };
}

/** While the REPL runs, a Session prints as one line instead of its internals (unless it has its own printing). */
export function installSessionDisplay(): () => void {
  const proto = Session.prototype as unknown as Record<symbol, unknown>;
  if (Object.prototype.hasOwnProperty.call(proto, inspect.custom)) return () => {};
  proto[inspect.custom] = function (this: Session, _depth: number, options: InspectOptionsStylized): string {
    if (this.closed) return options.stylize(`Session(closed, ${this.url})`, "special");
    let info;
    try {
      info = this.info;
    } catch {
      return options.stylize(`Session(connecting, ${this.url})`, "special");
    }
    const where = this.sidecar ? `embedded, pid ${info.pid}` : `${this.url}, pid ${info.pid}`;
    return options.stylize(`Session(${where}, JAX ${info.jax} on ${info.backend}, ${info.devices.length} device${info.devices.length === 1 ? "" : "s"})`, "special");
  };
  return () => {
    delete proto[inspect.custom];
  };
}

/** A JavaScript error's stack without the REPL's machinery: frames after the last one in REPL input are dropped. */
export function trimStack(e: unknown): void {
  if (!(e instanceof Error) || typeof e.stack !== "string") return;
  const lines = e.stack.split("\n");
  let last = -1;
  lines.forEach((l, i) => {
    if (/^\s+at .*\bREPL\d+:\d+/.test(l)) last = i;
  });
  if (last >= 0) e.stack = lines.filter((l, i) => i <= last || !/^\s+at /.test(l)).join("\n");
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

/**
 * The DeviceArrays in a value: itself, or inside arrays, plain objects and
 * Modules (bounded in depth and count; cycles are skipped).
 */
export function collectDeviceArrays(value: unknown, limit = 10_000): DeviceArray[] {
  const out: DeviceArray[] = [];
  const seen = new Set<object>();
  const walk = (v: unknown, depth: number): void => {
    if (out.length >= limit || depth > 8 || v === null || typeof v !== "object") return;
    if (v instanceof DeviceArray) {
      if (!v.disposed) out.push(v);
      return;
    }
    if (seen.has(v)) return;
    seen.add(v);
    if (Array.isArray(v)) {
      for (const x of v.slice(0, limit)) walk(x, depth + 1);
      return;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null || v instanceof Module) {
      for (const x of Object.values(v)) walk(x, depth + 1);
    }
  };
  walk(value, 0);
  return out;
}

/** The DeviceArrays of a result worth fetching for display: not yet fetched, and small enough together. */
export function toAutoFetch(value: unknown, owner: unknown, maxBytes = AUTO_FETCH_BYTES): DeviceArray[] {
  const arrays = collectDeviceArrays(value).filter((a) => a.owner === owner && !fetched.has(a));
  const unique = [...new Set(arrays)];
  const bytes = unique.reduce((s, a) => s + a.nbytes, 0);
  return bytes <= maxBytes ? unique : [];
}

/** The REPL's writer: util.inspect with colours when allowed. */
export function makeWriter(color: boolean): (v: unknown) => string {
  return (v: unknown) => inspect(v, { colors: color, depth: 4, showProxy: false, breakLength: process.stdout.columns || 80, maxArrayLength: 100 });
}

/** Errors the REPL prints itself: bridge errors, and Ctrl-C interrupts. Returns null for the rest (Node prints those). */
export function formatError(e: unknown, color: boolean): string | null {
  const p = paint(color);
  if (e instanceof SidecarError) {
    const lines = [`${p.red(p.bold(`Python ${e.remoteType}`))}: ${e.remoteMessage}`];
    const tb = trimTraceback(e.remoteTraceback);
    if (tb.frames.length > 0) {
      const cut = tb.hidden > 0 ? `, last ${tb.frames.length} of ${tb.frames.length + tb.hidden} frames (_error.remoteTraceback has all)` : "";
      lines.push(p.dim(`Traceback (most recent call last)${cut}:`));
      for (const f of tb.frames) {
        const [file, ...code] = f.split("\n");
        lines.push(p.dim(file ?? ""), ...code);
      }
    }
    return lines.join("\n");
  }
  if (e instanceof SidecarDiedError) {
    return `${p.red(p.bold(e.name))}: ${e.message}\n${p.yellow("Type .restart for a new sidecar, or .connect URL.")}`;
  }
  if (e instanceof JaxBridgeError) return `${p.red(p.bold(e.name))}: ${e.message}`;
  return null;
}

/** The last `TRACEBACK_FRAMES` entries of a `traceback.format_list` text. */
export function trimTraceback(tb: string, keep = TRACEBACK_FRAMES): { frames: string[]; hidden: number } {
  const frames = tb
    .split(/^(?=\s*File ")/m)
    .map((f) => f.replace(/\s+$/, ""))
    .filter((f) => f.trim() !== "");
  const hidden = Math.max(0, frames.length - keep);
  return { frames: frames.slice(hidden), hidden };
}
