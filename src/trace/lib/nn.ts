/**
 * `jax.nn` inside traced functions, written with the same jnp/lax
 * operations as jax/_src/nn/functions.py. Python float constants there
 * (`6.`, `0.5`) are weak floats; here they are weak float literals too, so an
 * integer input promotes exactly as in JAX.
 */

import type { DType } from "../../values/dtype.js";
import { lit, requireTrace, type LitOperand } from "../core.js";
import { Tracer } from "../tracer.js";
import * as lax from "./lax.js";
import * as jnp from "./jnp.js";
import { customJvpFlat } from "./transforms-flat.js";
import type { ArrayLike, AxisArg } from "./jnp.js";
import { defaultFloat, kindOf } from "../dtypes.js";
import { normAxes } from "../shapes.js";

/** A Python float constant: a weakly typed float literal. */
function f(v: number): LitOperand {
  return lit(v, defaultFloat(requireTrace("nn").x64), true);
}

type Arg = ArrayLike;

const RELU = {};
const RELU6 = {};

/**
 * `jax.nn.relu`, a custom_jvp in JAX so that its derivative at 0 is 0
 * (`max`'s own would be 0.5): here too, with JAX's rule
 * (`relu.defjvps(lambda g, ans, x: lax.select(x > 0, g, lax.full_like(g, 0)))`).
 */
export function relu(x: Arg): Tracer {
  return customJvpFlat(
    ([t]) => [jnp.maximum(t!, 0)],
    ([t], [g]) => [[relu(t!)], [lax.selectN(jnp.greater(t!, 0), jnp.fullLike(g!, 0), g!)]],
    [jnp.asarray(x)],
    { op: "relu", key: RELU },
  )[0]!;
}

/** `jax.nn.relu6`, with JAX's custom JVP (zero derivative at 0 and 6). */
export function relu6(x: Arg): Tracer {
  return customJvpFlat(
    ([t]) => [jnp.minimum(jnp.maximum(t!, 0), f(6))],
    ([t], [g]) => [[relu6(t!)], [lax.selectN(jnp.logicalAnd(jnp.greater(t!, 0), jnp.less(t!, 6)), jnp.fullLike(g!, 0), g!)]],
    [jnp.asarray(x)],
    { op: "relu6", key: RELU6 },
  )[0]!;
}
export function sigmoid(x: Arg): Tracer {
  return lax.logistic(jnp.asarray(x));
}
export function logSigmoid(x: Arg): Tracer {
  return jnp.negative(softplus(jnp.negative(x)));
}
export function softplus(x: Arg): Tracer {
  return jnp.logaddexp(x, 0);
}
export function softSign(x: Arg): Tracer {
  const t = jnp.asarray(x);
  return jnp.divide(t, jnp.add(jnp.abs(t), 1));
}
export function silu(x: Arg): Tracer {
  const t = jnp.asarray(x);
  return jnp.multiply(t, sigmoid(t));
}
export const swish = silu;
export function mish(x: Arg): Tracer {
  const t = jnp.asarray(x);
  return jnp.multiply(t, jnp.tanh(softplus(t)));
}
export function elu(x: Arg, alpha = 1.0): Tracer {
  const t = jnp.asarray(x);
  return jnp.where(jnp.greater(t, 0), t, jnp.multiply(f(alpha), jnp.expm1(jnp.where(jnp.greater(t, 0), f(0), t))));
}
export function leakyRelu(x: Arg, negativeSlope = 0.01): Tracer {
  const t = jnp.asarray(x);
  return jnp.where(jnp.greaterEqual(t, 0), t, jnp.multiply(f(negativeSlope), t));
}
export function hardTanh(x: Arg): Tracer {
  const t = jnp.asarray(x);
  return jnp.where(jnp.greater(t, 1), 1, jnp.where(jnp.less(t, -1), -1, t));
}
export function celu(x: Arg, alpha = 1.0): Tracer {
  return jnp.add(jnp.maximum(x, f(0)), jnp.multiply(f(alpha), jnp.expm1(jnp.divide(jnp.minimum(x, f(0)), f(alpha)))));
}
export function selu(x: Arg): Tracer {
  const alpha = 1.6732632423543772848170429916717;
  const scale = 1.0507009873554804934193349852946;
  return jnp.multiply(f(scale), elu(x, alpha));
}
export function hardSigmoid(x: Arg): Tracer {
  return jnp.divide(relu6(jnp.add(x, f(3))), f(6));
}
export function hardSilu(x: Arg): Tracer {
  const t = jnp.asarray(x);
  return jnp.multiply(t, hardSigmoid(t));
}
export const hardSwish = hardSilu;

/** `jax.nn.gelu(x, approximate=true)`. */
export function gelu(x: Arg, approximate = true): Tracer {
  const t = promoteInexact(x);
  const d = t.dtype;
  if (approximate) {
    const c = lit(Math.sqrt(2 / Math.PI), d);
    const cube = jnp.power(t, 3);
    const inner = jnp.multiply(c, jnp.add(t, jnp.multiply(f(0.044715), cube)));
    const cdf = jnp.multiply(f(0.5), jnp.add(f(1), jnp.tanh(inner)));
    return jnp.multiply(t, cdf);
  }
  const sqrtHalf = lit(Math.sqrt(0.5), d);
  const r = jnp.multiply(jnp.multiply(f(0.5), t), lax.erfc(jnp.multiply(jnp.negative(t), sqrtHalf)));
  return r.dtype === d ? r : jnp.astype(r, d);
}

function promoteInexact(x: Arg): Tracer {
  const { ins } = jnp.promote("nn", [x], "inexact");
  const i = ins[0]!;
  return i instanceof Tracer ? i : lax.broadcastInDim(i, [], []);
}

/** `jax.nn.softmax(x, axis=-1)`. */
export function softmax(x: Arg, opts: { axis?: number | readonly number[] } = {}): Tracer {
  const t = jnp.asarray(x);
  const axis = opts.axis ?? -1;
  const xMax = jnp.maxInitial(t, { axis, keepdims: true }, -Infinity);
  const un = jnp.exp(jnp.subtract(t, lax.stopGradient(xMax)));
  return jnp.divide(un, jnp.sum(un, { axis, keepdims: true }));
}

/** `jax.nn.log_softmax(x, axis=-1)`. */
export function logSoftmax(x: Arg, opts: { axis?: number | readonly number[] } = {}): Tracer {
  const t = jnp.asarray(x);
  const axis = opts.axis ?? -1;
  const xMax = jnp.maxInitial(t, { axis, keepdims: true }, -Infinity);
  const shifted = jnp.subtract(t, lax.stopGradient(xMax));
  const lse = jnp.log(jnp.sum(jnp.exp(shifted), { axis, keepdims: true }));
  return jnp.subtract(shifted, lse);
}

/** `jax.nn.logsumexp(x, axis, keepdims)`. */
export function logsumexp(x: Arg, opts: AxisArg = {}): Tracer {
  return jnp.logsumexp(x, opts);
}

/** `jax.nn.one_hot(x, numClasses, {dtype, axis})`. */
export function oneHot(x: Arg, numClasses: number, opts: { dtype?: DType; axis?: number } = {}): Tracer {
  const t = jnp.asarray(x);
  const is64 = requireTrace("one_hot").x64;
  const dtype = opts.dtype ?? defaultFloat(is64);
  const outAxis = normAxes("one_hot", opts.axis ?? -1, t.ndim + 1)[0]!;
  const lhs = lax.expandDims(t, [outAxis]);
  const rhsShape = t.shape.map(() => 1);
  rhsShape.splice(outAxis, 0, numClasses);
  const rhs = lax.iota(kindOf(t.dtype) === "i" || kindOf(t.dtype) === "u" ? t.dtype : "int32", rhsShape, outAxis);
  return jnp.astype(jnp.equal(lhs, rhs), dtype);
}

