/**
 * optax's losses (`optax.losses`) that a training step usually needs, on
 * tracers, written as optax writes them (the same primitives in the same
 * order, so a loss, and the gradient JAX derives from it, has optax's bits).
 * They are plain traced functions: call them inside the function you
 * differentiate.
 */

import { BridgeInputError } from "../values/errors.js";
import { kindOf } from "../trace/dtypes.js";
import type { Tracer } from "../trace/tracer.js";
import * as jnp from "../trace/lib/jnp.js";
import * as nn from "../trace/lib/nn.js";

type Arg = jnp.ArrayLike;

function checkFloating(op: string, x: Arg): void {
  const d = (x as Tracer).dtype;
  if (d !== undefined && kindOf(d) !== "f") throw new BridgeInputError(`optax.${op}: predictions must be a floating array, got ${d}`);
}

/** `optax.huber_loss(predictions, targets, delta=1.0)`: quadratic within `delta` of the target, linear beyond. */
export function huberLoss(predictions: Arg, targets?: Arg | null, opts: { delta?: number } = {}): Tracer {
  checkFloating("huber_loss", predictions);
  const delta = opts.delta ?? 1.0;
  const errors = targets === undefined || targets === null ? jnp.asarray(predictions) : jnp.subtract(predictions, targets);
  const absErrors = jnp.abs(errors);
  const quadratic = jnp.minimum(absErrors, delta);
  const linear = jnp.subtract(absErrors, quadratic);
  return jnp.add(jnp.multiply(0.5, jnp.power(quadratic, 2)), jnp.multiply(delta, linear));
}

/** `optax.squared_error(predictions, targets)`: `(predictions - targets) ** 2`; the shapes must be equal (no broadcasting). */
export function squaredError(predictions: Arg, targets?: Arg | null): Tracer {
  checkFloating("squared_error", predictions);
  const ps = (predictions as Tracer).shape;
  const ts = (targets as Tracer | null | undefined)?.shape;
  if (ps !== undefined && ts !== undefined && ps.join(",") !== ts.join(",")) {
    throw new BridgeInputError(`optax.squared_error: predictions and targets must have the same shape (optax does not broadcast them), got [${ps.join(", ")}] and [${ts.join(", ")}]`);
  }
  const errors = targets === undefined || targets === null ? jnp.asarray(predictions) : jnp.subtract(predictions, targets);
  return jnp.power(errors, 2);
}

/** `optax.l2_loss(predictions, targets)`: `0.5 * squared_error`. */
export function l2Loss(predictions: Arg, targets?: Arg | null): Tracer {
  return jnp.multiply(0.5, squaredError(predictions, targets));
}

/**
 * `optax.softmax_cross_entropy(logits, labels, axis=-1)`: `-(labels *
 * log_softmax(logits)).sum(axis)`, labels a probability distribution (one-hot
 * for classes: `nn.oneHot(y, n)`).
 */
export function softmaxCrossEntropy(logits: Arg, labels: Arg, opts: { axis?: number } = {}): Tracer {
  checkFloating("softmax_cross_entropy", logits);
  const axis = opts.axis ?? -1;
  const logProbs = nn.logSoftmax(logits, { axis });
  return jnp.negative(jnp.sum(jnp.multiply(labels, logProbs), { axis }));
}
