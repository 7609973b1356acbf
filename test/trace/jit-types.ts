/**
 * Type-level tests of `jit`, checked by the compiler (`npm run typecheck`;
 * tsconfig.json includes test/), never run: a line here that stops
 * compiling, or an `@ts-expect-error` that finds no error, fails the check.
 * A jitted function takes any array (NDArray, DeviceArray) where `fn` takes
 * a Tracer, and resolves to `fn`'s output tree with DeviceArrays for array
 * leaves (NDArrays with `fetch: true`); static leaves keep their types.
 */
import { type DeviceArray, jit, jnp, type NDArray, type Tracer } from "../../src/index.js";

declare const dw: DeviceArray;
declare const dx: DeviceArray;
declare const hx: NDArray;

export async function jitTypes(): Promise<void> {
  const f = jit((w: Tracer, x: Tracer) => x.matmul(w).sum());
  const y: DeviceArray = await f(dw, dx);
  const mixed: DeviceArray = await f(hx, dx);
  // @ts-expect-error a string is not an array
  await f("w", dx);
  // @ts-expect-error a number is a static leaf, not an array: fn would get a number where it expects a Tracer
  await f(1, dx);
  // @ts-expect-error the call resolves to a DeviceArray, not an NDArray
  const notHost: NDArray = await f(dw, dx);
  // @ts-expect-error two arguments
  await f(dw);

  // fetch: true resolves to host arrays, per call or for the jitted function.
  const host: NDArray = await f.withOptions({ fetch: true })(dw, dx);
  const device: DeviceArray = await f.withOptions({ fetch: false, timeoutMs: 1000 })(dw, dx);
  const fetched: NDArray = await jit((x: Tracer) => x.sum(), { fetch: true })(dx);
  // @ts-expect-error with fetch: true the result is an NDArray
  const notDevice: DeviceArray = await jit((x: Tracer) => x.sum(), { fetch: true })(dx);

  // Trees: array leaves map, static leaves keep their types, on the way in and out.
  const g = jit((p: { w: Tracer; act: "relu" | "tanh" }, x: Tracer) => ({ out: jnp.tanh(x.matmul(p.w)), act: p.act, n: 3, parts: [x, x.sum()] as const }));
  const r = await g({ w: dw, act: "relu" }, hx);
  const out: DeviceArray = r.out;
  const act: "relu" | "tanh" = r.act;
  const n: number = r.n;
  const parts: readonly [DeviceArray, DeviceArray] = r.parts;
  // @ts-expect-error act is one of two strings
  await g({ w: dw, act: "gelu" }, hx);
  // @ts-expect-error w must be an array
  await g({ w: [1, 2], act: "relu" }, hx);

  void [y, mixed, notHost, host, device, fetched, notDevice, out, act, n, parts];
}
