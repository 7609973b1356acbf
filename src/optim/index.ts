/**
 * `optax` for TypeScript: optimizers, gradient transformations and
 * learning-rate schedules on the tracer, with optax's names (in camelCase),
 * hyperparameters, state layouts and numbers. Exported from the public API
 * as the namespace `optax`:
 *
 * ```ts
 * const opt = optax.adam(1e-3);
 * const step = jit((params, state, batch) => {
 *   const [loss, grads] = valueAndGrad(lossFn)(params, batch);
 *   const [updates, next] = opt.update(grads, state, params);
 *   return [optax.applyUpdates(params, updates), next, loss];
 * });
 * let state = await opt.init(params);
 * ```
 */
export {
  type GradientTransformation,
  type OptState,
  type InitResult,
  type UpdateResult,
  type ScheduleFn,
  type ScalarOrSchedule,
  EmptyState,
  identity,
} from "./base.js";
export { chain } from "./combine.js";
export { applyUpdates, type ApplyResult } from "./update.js";
export {
  ScaleByAdamState,
  ScaleByRmsState,
  ScaleByRmsWithCountState,
  ScaleByRStdDevState,
  ScaleByRStdDevWithCountState,
  ScaleByRssState,
  ScaleByLionState,
  ScaleByScheduleState,
  TraceState,
  WeightDecaySchedule,
  scaleByAdam,
  scaleByRms,
  scaleByStddev,
  scaleByRss,
  scaleByLion,
  scale,
  scaleBySchedule,
  scaleByLearningRate,
  trace,
  addDecayedWeights,
  clipByGlobalNorm,
} from "./transform.js";
export { sgd, adam, adamw, rmsprop, adagrad, lion, type AdamOptions } from "./alias.js";
export {
  type Schedule,
  constantSchedule,
  polynomialSchedule,
  linearSchedule,
  cosineDecaySchedule,
  exponentialDecay,
  joinSchedules,
  warmupConstantSchedule,
  warmupCosineDecaySchedule,
} from "./schedule.js";
export { globalNorm } from "./global-norm.js";
export { huberLoss, squaredError, l2Loss, softmaxCrossEntropy } from "./losses.js";
