import { JaxBridgeError } from "../values/errors.js";

/**
 * A traced operation that cannot be recorded: a shape or dtype mismatch, a
 * bad axis, an escaped tracer. The message names the op, what it got, and
 * the line of user code that called it.
 */
export class TraceError extends JaxBridgeError {
  override name = "TraceError";
  /** The op that refused (`add`, `dot_general`, `filterScan`). */
  readonly op: string;
  /** The first stack line outside jaxbridge's tracer, e.g. `at step (/app/env.ts:12:9)`. */
  readonly site: string | undefined;
  constructor(op: string, message: string, site?: string) {
    super(`${op}: ${message}${site ? `\n  called ${site.trim()}` : ""}`);
    this.op = op;
    this.site = site;
  }
}

/** A tracer was used where JavaScript needs a concrete value. */
export class TracerConversionError extends JaxBridgeError {
  override name = "TracerConversionError";
}

export const TRACER_AS_VALUE = (what: string, desc: string): string =>
  `${what} of a traced value (${desc}): inside a traced function, arrays are abstract ` +
  `(only their shape and dtype are known), so JavaScript cannot branch on them or turn them into numbers or strings. ` +
  `Branch with filterCond(pred, trueFun, falseFun, ...args) (or jnp.where for elementwise choices), ` +
  `loop with filterScan, and read values after the call with await result.toHost().`;

/**
 * The first stack frame outside the tracer (src/trace) and the libraries on it
 * (src/equinox, src/lerax, src/optim), i.e. the user's code
 * that called the op. Computed only when an error is thrown.
 */
export function userSite(): string | undefined {
  const stack = new Error().stack?.split("\n").slice(1) ?? [];
  for (const line of stack) {
    if (/[\\/]src[\\/](trace|lerax|equinox|optim)[\\/]/.test(line)) continue;
    if (/\(node:|at node:|node_modules[\\/]|\(<anonymous>\)|at <anonymous>/.test(line)) continue;
    return line.trim();
  }
  return undefined;
}

export function traceError(op: string, message: string): TraceError {
  return new TraceError(op, message, userSite());
}
