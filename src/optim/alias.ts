/**
 * The optimizers (`optax/_src/alias.py`): each is `chain` of the
 * transformations optax chains, in the same order, so its state has optax's
 * layout (`adam`: `[ScaleByAdamState(count, mu, nu), EmptyState]`).
 * Hyperparameters are JS numbers and mean what optax's Python floats mean;
 * a learning rate may also be a schedule (a function of the step count).
 */

import type { DType } from "../values/dtype.js";
import { identity, type GradientTransformation, type ScalarOrSchedule } from "./base.js";
import { chain } from "./combine.js";
import { addDecayedWeights, scaleByAdam, scaleByLearningRate, scaleByLion, scaleByRms, scaleByRss, scaleByStddev, trace } from "./transform.js";

/**
 * `optax.sgd(learning_rate, momentum, nesterov, accumulator_dtype)`:
 * `-learning_rate * g`, with (Nesterov) momentum when `momentum` is given.
 * State: `[TraceState | EmptyState, EmptyState | ScaleByScheduleState]`.
 */
export function sgd(learningRate: ScalarOrSchedule, opts: { momentum?: number | null; nesterov?: boolean; accumulatorDtype?: DType | null } = {}): GradientTransformation {
  const first =
    opts.momentum !== undefined && opts.momentum !== null
      ? trace({ decay: opts.momentum, nesterov: opts.nesterov ?? false, accumulatorDtype: opts.accumulatorDtype ?? null })
      : identity();
  return chain(first, scaleByLearningRate(learningRate));
}

export interface AdamOptions {
  b1?: number;
  b2?: number;
  eps?: number;
  epsRoot?: number;
  muDtype?: DType | null;
  nesterov?: boolean;
}

/**
 * `optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0,
 * mu_dtype=None, nesterov=False)`. State: `[ScaleByAdamState(count, mu, nu),
 * EmptyState | ScaleByScheduleState]`.
 */
export function adam(learningRate: ScalarOrSchedule, opts: AdamOptions = {}): GradientTransformation {
  return chain(scaleByAdam(opts), scaleByLearningRate(learningRate));
}

/**
 * `optax.adamw(learning_rate, b1, b2, eps, eps_root, mu_dtype,
 * weight_decay=1e-4, nesterov)`: Adam with decoupled weight decay; `update`
 * needs the parameters. State: `[ScaleByAdamState, EmptyState |
 * WeightDecaySchedule, EmptyState | ScaleByScheduleState]`.
 */
export function adamw(learningRate: ScalarOrSchedule, opts: AdamOptions & { weightDecay?: ScalarOrSchedule } = {}): GradientTransformation {
  return chain(scaleByAdam(opts), addDecayedWeights(opts.weightDecay ?? 1e-4), scaleByLearningRate(learningRate));
}

/**
 * `optax.rmsprop(learning_rate, decay=0.9, eps=1e-8, initial_scale=0.0,
 * eps_in_sqrt=True, centered=False, momentum=None, nesterov=False,
 * bias_correction=False)`. State: `[ScaleByRmsState | ScaleByRStdDevState
 * (…WithCountState with bias correction), EmptyState | ScaleByScheduleState,
 * TraceState | EmptyState]`.
 */
export function rmsprop(
  learningRate: ScalarOrSchedule,
  opts: { decay?: number; eps?: number; initialScale?: number; epsInSqrt?: boolean; centered?: boolean; momentum?: number | null; nesterov?: boolean; biasCorrection?: boolean } = {},
): GradientTransformation {
  const scaling = { decay: opts.decay, eps: opts.eps, initialScale: opts.initialScale, epsInSqrt: opts.epsInSqrt, biasCorrection: opts.biasCorrection };
  const last = opts.momentum !== undefined && opts.momentum !== null ? trace({ decay: opts.momentum, nesterov: opts.nesterov ?? false }) : identity();
  return chain(opts.centered ? scaleByStddev(scaling) : scaleByRms(scaling), scaleByLearningRate(learningRate), last);
}

/**
 * `optax.adagrad(learning_rate, initial_accumulator_value=0.1, eps=1e-7)`.
 * State: `[ScaleByRssState(sum_of_squares), EmptyState | ScaleByScheduleState]`.
 */
export function adagrad(learningRate: ScalarOrSchedule, opts: { initialAccumulatorValue?: number; eps?: number } = {}): GradientTransformation {
  return chain(scaleByRss(opts), scaleByLearningRate(learningRate));
}

/**
 * `optax.lion(learning_rate, b1=0.9, b2=0.99, mu_dtype=None,
 * weight_decay=1e-3)`; `update` needs the parameters. State:
 * `[ScaleByLionState(count, mu), EmptyState | WeightDecaySchedule, EmptyState |
 * ScaleByScheduleState]`.
 */
export function lion(learningRate: ScalarOrSchedule, opts: { b1?: number; b2?: number; muDtype?: DType | null; weightDecay?: ScalarOrSchedule } = {}): GradientTransformation {
  return chain(scaleByLion(opts), addDecayedWeights(opts.weightDecay ?? 1e-3), scaleByLearningRate(learningRate));
}
