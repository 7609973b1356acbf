/**
 * optax's gradient transformations (`optax/_src/transform.py`,
 * `optax/transforms/`), each with its state class named and laid out as
 * optax's NamedTuple: the building blocks the optimizers in alias.ts chain.
 * Every update is written as optax writes it, operation for operation
 * (tree-math.ts has the shared pieces), so the bits agree with optax's on
 * one backend.
 */

import type { DType } from "../values/dtype.js";
import { Module } from "../values/module.js";
import { BridgeInputError } from "../values/errors.js";
import { treeMap } from "../values/tree.js";
import type { Tracer } from "../trace/tracer.js";
import * as jnp from "../trace/lib/jnp.js";
import * as lax from "../trace/lib/lax.js";
import {
  checkNumber,
  checkScalarOrSchedule,
  EmptyState,
  gradientTransformation,
  type GradientTransformation,
  identity,
  pyFloat,
  type ScalarOrSchedule,
  type ScheduleFn,
} from "./base.js";
import { absSq, biasCorrection, canonicalDType, cast, castLike, fullLike, globalNorm, rejectComplex, safeIncrement, updateMoment, updateMomentPerElemNorm, zerosLike, zipTrees } from "./tree-math.js";

type Leaf = jnp.ArrayLike;
type Tree = unknown;

const int32Zero = (): Tracer => jnp.zeros([], "int32");

// --- states: optax's NamedTuples, fields in optax's order ----------------------------------------

/** `optax.ScaleByAdamState`. */
export class ScaleByAdamState extends Module {
  constructor(
    public count: Tree,
    public mu: Tree,
    public nu: Tree,
  ) {
    super();
  }
}

/** `optax.ScaleByRmsState` (rmsprop without bias correction). */
export class ScaleByRmsState extends Module {
  constructor(public nu: Tree) {
    super();
  }
}

/** `optax.ScaleByRmsWithCountState` (rmsprop with bias correction). */
export class ScaleByRmsWithCountState extends Module {
  constructor(
    public count: Tree,
    public nu: Tree,
  ) {
    super();
  }
}

/** `optax.ScaleByRStdDevState` (centered rmsprop). */
export class ScaleByRStdDevState extends Module {
  constructor(
    public mu: Tree,
    public nu: Tree,
  ) {
    super();
  }
}

/** `optax.ScaleByRStdDevWithCountState` (centered rmsprop with bias correction). */
export class ScaleByRStdDevWithCountState extends Module {
  constructor(
    public count: Tree,
    public mu: Tree,
    public nu: Tree,
  ) {
    super();
  }
}

/** `optax.ScaleByRssState` (adagrad). */
export class ScaleByRssState extends Module {
  constructor(public sumOfSquares: Tree) {
    super();
  }
}

/** `optax.ScaleByLionState`. */
export class ScaleByLionState extends Module {
  constructor(
    public count: Tree,
    public mu: Tree,
  ) {
    super();
  }
}

/** `optax.ScaleByScheduleState`: the step count a schedule reads. */
export class ScaleByScheduleState extends Module {
  constructor(public count: Tree) {
    super();
  }
}

/** `optax.TraceState` (momentum). */
export class TraceState extends Module {
  constructor(public trace: Tree) {
    super();
  }
}

/** `optax.WeightDecaySchedule`: add_decayed_weights' state when the weight decay is a schedule. */
export class WeightDecaySchedule extends Module {
  constructor(public count: Tree) {
    super();
  }
}

// --- transformations ------------------------------------------------------------------------------

/** `optax.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov)`. */
export function scaleByAdam(opts: { b1?: number; b2?: number; eps?: number; epsRoot?: number; muDtype?: DType | null; nesterov?: boolean } = {}): GradientTransformation {
  const op = "scale_by_adam";
  const b1 = checkNumber(op, "b1", opts.b1 ?? 0.9);
  const b2 = checkNumber(op, "b2", opts.b2 ?? 0.999);
  const eps = checkNumber(op, "eps", opts.eps ?? 1e-8);
  const epsRoot = checkNumber(op, "epsRoot", opts.epsRoot ?? 0.0);
  const nesterov = opts.nesterov ?? false;
  return gradientTransformation(
    op,
    (params) => {
      const muDtype = canonicalDType(opts.muDtype, op);
      return new ScaleByAdamState(int32Zero(), zerosLike(params, muDtype), zerosLike(params));
    },
    (updates, state) => {
      const s = state as ScaleByAdamState;
      const muDtype = canonicalDType(opts.muDtype, op);
      const mu = updateMoment(updates, s.mu, b1, 1, `optax.${op}`, "the state's mu");
      const nu = updateMomentPerElemNorm(updates, s.nu, b2, 2, `optax.${op}`, "the state's nu");
      const countInc = safeIncrement(s.count as Tracer);
      let muHat: Tree;
      if (nesterov) {
        muHat = treeMap(
          (m: Leaf, g: Leaf) => jnp.add(jnp.multiply(pyFloat(b1), m), jnp.multiply(pyFloat(1 - b1), g)),
          biasCorrection(mu, b1, safeIncrement(countInc)),
          biasCorrection(updates, b1, countInc),
        );
      } else muHat = biasCorrection(mu, b1, countInc);
      const nuHat = biasCorrection(nu, b2, countInc);
      const out = treeMap((m: Leaf, v: Leaf) => jnp.divide(m, jnp.add(jnp.sqrt(jnp.add(v, pyFloat(epsRoot))), pyFloat(eps))), muHat, nuHat);
      return [out, new ScaleByAdamState(countInc, cast(mu, muDtype), castLike(nu, s.nu))];
    },
  );
}

/** The options `scale_by_rms` and `scale_by_stddev` share, with optax's defaults. */
export interface RmsOptions {
  decay?: number;
  eps?: number;
  initialScale?: number;
  epsInSqrt?: boolean;
  biasCorrection?: boolean;
}

function rmsOptions(op: string, opts: RmsOptions) {
  return {
    decay: checkNumber(op, "decay", opts.decay ?? 0.9),
    eps: checkNumber(op, "eps", opts.eps ?? 1e-8),
    initialScale: checkNumber(op, "initialScale", opts.initialScale ?? 0.0),
    epsInSqrt: opts.epsInSqrt ?? true,
    corrected: opts.biasCorrection ?? false,
  };
}

/**
 * `optax.scale_by_rms(decay, eps, initial_scale, eps_in_sqrt,
 * bias_correction)`: divide by the root of the moving average of squares.
 */
export function scaleByRms(opts: RmsOptions = {}): GradientTransformation {
  const op = "scale_by_rms";
  const { decay, eps, initialScale, epsInSqrt, corrected } = rmsOptions(op, opts);
  return gradientTransformation(
    op,
    (params) => {
      const nu = fullLike(params, initialScale);
      return corrected ? new ScaleByRmsWithCountState(int32Zero(), nu) : new ScaleByRmsState(nu);
    },
    (updates, state) => {
      const s = state as ScaleByRmsState | ScaleByRmsWithCountState;
      const nu = updateMomentPerElemNorm(updates, s.nu, decay, 2, `optax.${op}`, "the state's nu");
      let countInc: Tracer | undefined;
      let nuHat = nu;
      if (corrected) {
        countInc = safeIncrement((s as ScaleByRmsWithCountState).count as Tracer);
        nuHat = biasCorrection(nu, decay, countInc);
      }
      const scaling = treeMap(
        (n: Leaf) => (epsInSqrt ? lax.rsqrt(jnp.add(n, pyFloat(eps))) : jnp.divide(1, jnp.add(jnp.sqrt(n), pyFloat(eps)))),
        nuHat,
      );
      const out = treeMap((sc: Leaf, g: Leaf) => jnp.multiply(sc, g), scaling, updates);
      return [out, corrected ? new ScaleByRmsWithCountState(countInc, nu) : new ScaleByRmsState(nu)];
    },
  );
}

/**
 * `optax.scale_by_stddev(decay, eps, initial_scale, eps_in_sqrt,
 * bias_correction)`: divide by the root of the centered moving average of
 * squares (centered rmsprop).
 */
export function scaleByStddev(opts: RmsOptions = {}): GradientTransformation {
  const op = "scale_by_stddev";
  const { decay, eps, initialScale, epsInSqrt, corrected } = rmsOptions(op, opts);
  return gradientTransformation(
    op,
    (params) => {
      const mu = zerosLike(params);
      const nu = fullLike(params, initialScale);
      return corrected ? new ScaleByRStdDevWithCountState(int32Zero(), mu, nu) : new ScaleByRStdDevState(mu, nu);
    },
    (updates, state) => {
      const s = state as ScaleByRStdDevState | ScaleByRStdDevWithCountState;
      const mu = updateMoment(updates, s.mu, decay, 1, `optax.${op}`, "the state's mu");
      const nu = updateMomentPerElemNorm(updates, s.nu, decay, 2, `optax.${op}`, "the state's nu");
      let countInc: Tracer | undefined;
      let muHat = mu;
      let nuHat = nu;
      if (corrected) {
        countInc = safeIncrement((s as ScaleByRStdDevWithCountState).count as Tracer);
        muHat = biasCorrection(mu, decay, countInc);
        nuHat = biasCorrection(nu, decay, countInc);
      }
      const scaling = treeMap(
        (m: Leaf, n: Leaf) =>
          epsInSqrt ? lax.rsqrt(jnp.add(jnp.subtract(n, absSq(m)), pyFloat(eps))) : jnp.divide(1, jnp.add(jnp.sqrt(jnp.subtract(n, absSq(m))), pyFloat(eps))),
        muHat,
        nuHat,
      );
      const out = treeMap((sc: Leaf, g: Leaf) => jnp.multiply(sc, g), scaling, updates);
      return [out, corrected ? new ScaleByRStdDevWithCountState(countInc, mu, nu) : new ScaleByRStdDevState(mu, nu)];
    },
  );
}

/** `optax.scale_by_rss(initial_accumulator_value, eps)`: divide by the root of the sum of all squared gradients (adagrad). */
export function scaleByRss(opts: { initialAccumulatorValue?: number; eps?: number } = {}): GradientTransformation {
  const op = "scale_by_rss";
  const initial = checkNumber(op, "initialAccumulatorValue", opts.initialAccumulatorValue ?? 0.1, { min: 0 });
  const eps = checkNumber(op, "eps", opts.eps ?? 1e-7);
  return gradientTransformation(
    op,
    (params) => new ScaleByRssState(fullLike(params, initial)),
    (updates, state) => {
      rejectComplex(updates, `optax.${op}`);
      const s = state as ScaleByRssState;
      const sumOfSquares = zipTrees(`optax.${op}`, ["the updates", "the state's sumOfSquares"], (g, t) => jnp.add(absSq(g), t), updates, s.sumOfSquares);
      const inv = treeMap((t: Leaf) => jnp.where(jnp.greater(t, 0), lax.rsqrt(jnp.add(t, pyFloat(eps))), pyFloat(0.0)), sumOfSquares);
      const out = treeMap((a: Leaf, b: Leaf) => jnp.multiply(a, b), inv, updates);
      return [out, new ScaleByRssState(sumOfSquares)];
    },
  );
}

/** `optax.scale_by_lion(b1, b2, mu_dtype)` (the "hard" sign mode). */
export function scaleByLion(opts: { b1?: number; b2?: number; muDtype?: DType | null } = {}): GradientTransformation {
  const op = "scale_by_lion";
  const b1 = checkNumber(op, "b1", opts.b1 ?? 0.9);
  const b2 = checkNumber(op, "b2", opts.b2 ?? 0.99);
  return gradientTransformation(
    op,
    (params) => new ScaleByLionState(int32Zero(), zerosLike(params, canonicalDType(opts.muDtype, op))),
    (updates, state) => {
      const s = state as ScaleByLionState;
      const out = zipTrees(`optax.${op}`, ["the updates", "the state's mu"], (g, m) => jnp.sign(jnp.add(jnp.multiply(pyFloat(1.0 - b1), g), jnp.multiply(pyFloat(b1), m))), updates, s.mu);
      const mu = cast(updateMoment(updates, s.mu, b2, 1, `optax.${op}`, "the state's mu"), canonicalDType(opts.muDtype, op));
      return [out, new ScaleByLionState(safeIncrement(s.count as Tracer), mu)];
    },
  );
}

/** `optax.scale(step_size)`: multiply by a constant. */
export function scale(stepSize: number): GradientTransformation {
  const op = "scale";
  checkNumber(op, "stepSize", stepSize);
  return gradientTransformation(
    op,
    () => new EmptyState(),
    (updates, state) => [treeMap((g: Leaf) => jnp.multiply(pyFloat(stepSize), g), updates), state],
  );
}

/** `optax.scale_by_schedule(step_size_fn)`: multiply by `step_size_fn(count)`; the state counts the steps. */
export function scaleBySchedule(stepSizeFn: ScheduleFn): GradientTransformation {
  const op = "scale_by_schedule";
  if (typeof stepSizeFn !== "function") throw new BridgeInputError(`optax.${op}: stepSizeFn must be a function of the step count`);
  return gradientTransformation(
    op,
    () => new ScaleByScheduleState(int32Zero()),
    (updates, state) => {
      const count = (state as ScaleByScheduleState).count as Tracer;
      const stepSize = stepSizeFn(count);
      const out = treeMap((g: Tracer) => jnp.multiply(jnp.asarray(stepSize, g.dtype), g), updates);
      return [out, new ScaleByScheduleState(safeIncrement(count))];
    },
  );
}

/**
 * `optax.scale_by_learning_rate(learning_rate, flip_sign)`: multiply by
 * `-learning_rate` (by `learning_rate` with `flipSign: false`); a schedule
 * becomes `scale_by_schedule`.
 */
export function scaleByLearningRate(learningRate: ScalarOrSchedule | null | undefined, opts: { flipSign?: boolean } = {}): GradientTransformation {
  if (learningRate === null || learningRate === undefined) return identity();
  const lr = checkScalarOrSchedule("scale_by_learning_rate", "learningRate", learningRate);
  const m = (opts.flipSign ?? true) ? -1 : 1;
  if (typeof lr === "function") {
    return scaleBySchedule((count) => {
      const v = lr(count);
      return typeof v === "number" ? m * v : jnp.multiply(m, v);
    });
  }
  return scale(m * lr);
}

/** `optax.trace(decay, nesterov, accumulator_dtype)`: momentum. */
export function trace(opts: { decay: number; nesterov?: boolean; accumulatorDtype?: DType | null }): GradientTransformation {
  const op = "trace";
  const decay = checkNumber(op, "decay", opts.decay);
  const nesterov = opts.nesterov ?? false;
  return gradientTransformation(
    op,
    (params) => new TraceState(zerosLike(params, canonicalDType(opts.accumulatorDtype, op))),
    (updates, state) => {
      const f = (g: Leaf, t: Leaf) => jnp.add(g, jnp.multiply(pyFloat(decay), t));
      const newTrace = zipTrees(`optax.${op}`, ["the updates", "the state's trace"], f, updates, (state as TraceState).trace);
      const out = nesterov ? treeMap(f, updates, newTrace) : newTrace;
      return [out, new TraceState(cast(newTrace, canonicalDType(opts.accumulatorDtype, op)))];
    },
  );
}

/**
 * `optax.add_decayed_weights(weight_decay)`: `g + weight_decay * p`
 * (decoupled weight decay); `update` needs the parameters. A schedule keeps
 * a step count in a `WeightDecaySchedule` state.
 */
export function addDecayedWeights(weightDecay: ScalarOrSchedule = 0.0): GradientTransformation {
  const op = "add_decayed_weights";
  const wd = checkScalarOrSchedule(op, "weightDecay", weightDecay);
  return gradientTransformation(
    op,
    () => (typeof wd === "function" ? new WeightDecaySchedule(int32Zero()) : new EmptyState()),
    (updates, state, params) => {
      if (params === undefined || params === null) {
        throw new BridgeInputError(`optax.${op}: update needs the parameters: call update(updates, state, params)`);
      }
      const count = typeof wd === "function" ? ((state as WeightDecaySchedule).count as Tracer) : undefined;
      const newState = count ? new WeightDecaySchedule(safeIncrement(count)) : state;
      if (typeof wd === "number" && wd === 0) return [updates, newState];
      const s = typeof wd === "function" ? wd(count!) : pyFloat(wd);
      return [zipTrees(`optax.${op}`, ["the updates", "the parameters"], (g, p) => jnp.add(g, jnp.multiply(s, p)), updates, params), newState];
    },
  );
}

/**
 * `optax.clip_by_global_norm(max_norm)`: when the global L2 norm of the
 * updates exceeds `maxNorm`, scale them all down to norm `maxNorm`.
 */
export function clipByGlobalNorm(maxNorm: number): GradientTransformation {
  const op = "clip_by_global_norm";
  checkNumber(op, "maxNorm", maxNorm);
  return gradientTransformation(
    op,
    () => new EmptyState(),
    (updates, state) => {
      const gNorm = globalNorm(updates, `optax.${op}`);
      const trigger = jnp.squeeze(jnp.less(gNorm, pyFloat(maxNorm)));
      const out = treeMap((t: Tracer) => lax.selectN(trigger, jnp.multiply(jnp.divide(t, jnp.astype(gNorm, t.dtype)), pyFloat(maxNorm)), t), updates);
      return [out, state];
    },
  );
}
