import { randomBytes } from "node:crypto";
import { type DType, dtypeInfo } from "../../src/values/dtype.js";
import { NDArray } from "../../src/values/ndarray.js";

/** A small seeded PRNG, so a generated case can be replayed from its seed. */
export function mulberry32(seed: number): () => number {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

/** An array of random bits (bool kept to 0/1): every bit pattern of the dtype may appear. */
export function randomArray(dtype: DType, shape: number[]): NDArray {
  const info = dtypeInfo(dtype);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new info.ctor(n * info.lanes);
  const bytes = new Uint8Array(data.buffer);
  bytes.set(randomBytes(bytes.length));
  if (dtype === "bool") for (let i = 0; i < bytes.length; i++) bytes[i]! &= 1;
  return new NDArray(data, shape, dtype);
}
