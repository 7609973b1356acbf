/**
 * The library's functions for both worlds: inside a traced function they
 * record equations (the functions of ../jnp.ts etc. as they are); outside,
 * on DeviceArrays, NDArrays and numbers, they run at once on the sidecar
 * and return DeviceArrays (../../eager.ts). One wrapper per function, made
 * once; the namespaces in this folder are built from them.
 */
import type { DeviceArray } from "../../../values/device-array.js";
import type { LitOperand } from "../../core.js";
import { currentTrace } from "../../core.js";
import { eagerCall } from "../../eager.js";
import type { Tracer } from "../../tracer.js";

/** An argument type with the tracer's own kinds taken out: what an eager call accepts there. */
export type EagerArg<T> = T extends Tracer | LitOperand ? never : T extends readonly (infer E)[] ? readonly EagerArg<E>[] : T;
/** A result type with tracers as DeviceArrays. */
export type EagerResult<R> = R extends Tracer ? DeviceArray : R extends readonly Tracer[] ? DeviceArray[] : R;

/**
 * A library function as the namespaces offer it: called on a DeviceArray
 * (its first argument) outside a traced function it returns DeviceArrays;
 * otherwise it is typed as the function itself. The types cannot see
 * whether a trace is open, so a call that starts with something else
 * (`jnp.zeros([3])`, `jnp.add(1, x)`) is typed as a tracer call even where
 * it runs eagerly and returns a DeviceArray.
 */
export type Eager<F> = F extends (x: infer X, ...rest: infer P) => infer R
  ? DeviceArray extends X
    ? ((x: DeviceArray, ...rest: { [K in keyof P]: EagerArg<P[K]> }) => EagerResult<R>) & F
    : F
  : F;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFn = (...args: any[]) => any;

/** Marks a function made by `eager` (its value is the op's name). */
export const EAGER_OP = Symbol("jaxbridge.eagerOp");

/** `fn` for both worlds; `name` (`jnp.add`) keys the eager program cache and names the op in messages. */
export function eager<F extends AnyFn>(name: string, fn: F): Eager<F> {
  const both = (...args: unknown[]): unknown => (currentTrace() !== undefined ? fn(...args) : eagerCall(name, fn, args));
  Object.defineProperty(both, "name", { value: fn.name || name });
  Object.defineProperty(both, EAGER_OP, { value: name });
  return both as Eager<F>;
}

/** Every function `names` lists of a module, for both worlds. */
export function eagerNamespace<M extends object, K extends keyof M & string>(ns: string, mod: M, names: readonly K[]): { [N in K]: Eager<M[N]> } {
  const out = {} as { [N in K]: Eager<M[N]> };
  for (const n of names) out[n] = eager(`${ns}.${n}`, mod[n] as AnyFn) as Eager<M[typeof n]>;
  return out;
}
