import type { NDArray } from "./ndarray.js";

/** Placeholder numpy-style repr; replaced by the full formatter. */
export function formatNDArray(a: NDArray): string {
  return `array(${JSON.stringify(a.toList(), (_k, v) => (typeof v === "bigint" ? v.toString() : v))}, dtype=${a.dtype})`;
}
