/**
 * optax's learning-rate schedules (`optax/schedules/`): functions of the step
 * count, with optax's names, parameters and operations (a schedule's value
 * enters the update, so its bits matter as much as the optimizer's).
 *
 * Inside a traced function (where the optimizers call them, with the int32
 * step count of their state) a schedule returns a tracer, or a JS number
 * when it is constant. At top level `await schedule(step)` gives the value
 * as a JS number, computed by JAX as inside the optimizer (for logging and
 * plots).
 */

import { array, NDArray } from "../values/ndarray.js";
import { DeviceArray } from "../values/device-array.js";
import { BridgeInputError } from "../values/errors.js";
import { currentTrace } from "../trace/core.js";
import { jit } from "../trace/jit.js";
import { Tracer } from "../trace/tracer.js";
import * as jnp from "../trace/lib/jnp.js";
import { checkNumber, pyFloat, type ScheduleFn } from "./base.js";

/**
 * A schedule: `schedule(count)` inside a trace (count an integer tracer)
 * gives the value; `await schedule(step)` at top level gives it as a number.
 */
export interface Schedule {
  (count: Tracer): Tracer | number;
  (count: number | NDArray | DeviceArray): Promise<number>;
}

/** A schedule from its traced body; the top-level half runs it as one jitted program. */
export function schedule(name: string, fn: ScheduleFn): Schedule {
  let jitted: ((c: NDArray | DeviceArray) => Promise<unknown>) | undefined;
  const s = (count: Tracer | number | NDArray | DeviceArray): Tracer | number | Promise<number> => {
    if (currentTrace() !== undefined) return fn(count as Tracer);
    if (count instanceof Tracer) throw new BridgeInputError(`optax.${name}: a tracer was passed to a top-level call`);
    let c: NDArray | DeviceArray;
    if (typeof count === "number") {
      if (!Number.isInteger(count)) return Promise.reject(new BridgeInputError(`optax.${name}: the step count must be an integer, got ${count}`));
      c = array(count, "int32");
    } else c = count;
    jitted ??= jit((x: Tracer) => jnp.asarray(fn(x)), { name: `optax.${name}`, fetch: true }) as unknown as (c: NDArray | DeviceArray) => Promise<unknown>;
    return jitted(c).then((v) => Number((v as NDArray).item()));
  };
  Object.defineProperty(s, "name", { value: name });
  return s as Schedule;
}

/** `optax.constant_schedule(value)`. */
export function constantSchedule(value: number): Schedule {
  const v = checkNumber("constant_schedule", "value", value);
  return schedule("constant_schedule", () => v);
}

/**
 * `optax.polynomial_schedule(init_value, end_value, power, transition_steps,
 * transition_begin)`: from `initValue` to `endValue` over `transitionSteps`
 * steps starting at `transitionBegin`, as `(init - end) * (1 - t)**power + end`.
 * A JS integer `power` is a Python int (`integer_pow`), any other a float.
 * Non-positive `transitionSteps` give a constant schedule and a negative
 * `transitionBegin` counts as 0, as in optax.
 */
export function polynomialSchedule(opts: { initValue: number; endValue: number; power: number; transitionSteps: number; transitionBegin?: number }): Schedule {
  const op = "polynomial_schedule";
  const init = checkNumber(op, "initValue", opts.initValue);
  const end = checkNumber(op, "endValue", opts.endValue);
  const power = checkNumber(op, "power", opts.power);
  const steps = checkNumber(op, "transitionSteps", opts.transitionSteps, { integer: true });
  let begin = checkNumber(op, "transitionBegin", opts.transitionBegin ?? 0, { integer: true });
  if (steps <= 0) return schedule(op, () => init);
  if (begin < 0) begin = 0;
  return schedule(op, (count) => {
    const c = jnp.clip(jnp.subtract(count, begin), 0, steps);
    const frac = jnp.subtract(1, jnp.divide(c, steps));
    return jnp.add(jnp.multiply(pyFloat(init - end), jnp.power(frac, Number.isInteger(power) ? power : pyFloat(power))), pyFloat(end));
  });
}

/** `optax.linear_schedule(init_value, end_value, transition_steps, transition_begin)`: a polynomial schedule of power 1. */
export function linearSchedule(opts: { initValue: number; endValue: number; transitionSteps: number; transitionBegin?: number }): Schedule {
  return polynomialSchedule({ ...opts, power: 1 });
}

/**
 * `optax.cosine_decay_schedule(init_value, decay_steps, alpha, exponent)`:
 * `init * ((1 - alpha) * (0.5 * (1 + cos(pi * min(t, T) / T)))**exponent + alpha)`.
 */
export function cosineDecaySchedule(opts: { initValue: number; decaySteps: number; alpha?: number; exponent?: number }): Schedule {
  const op = "cosine_decay_schedule";
  const init = checkNumber(op, "initValue", opts.initValue);
  const decaySteps = checkNumber(op, "decaySteps", opts.decaySteps, { integer: true });
  if (!(decaySteps > 0)) throw new BridgeInputError(`optax.${op}: the cosine decay schedule requires positive decaySteps, got decaySteps=${decaySteps}`);
  const alpha = checkNumber(op, "alpha", opts.alpha ?? 0.0);
  const exponent = checkNumber(op, "exponent", opts.exponent ?? 1.0);
  return schedule(op, (count) => {
    // optax turns a Python-int decay_steps into a float first.
    const steps = pyFloat(decaySteps);
    const c = jnp.minimum(count, steps);
    const cosineDecay = jnp.multiply(0.5, jnp.add(1, jnp.cos(jnp.divide(jnp.multiply(pyFloat(Math.PI), c), steps))));
    const decayed = jnp.add(jnp.multiply(pyFloat(1 - alpha), jnp.power(cosineDecay, pyFloat(exponent))), pyFloat(alpha));
    return jnp.multiply(pyFloat(init), decayed);
  });
}

/**
 * `optax.exponential_decay(init_value, transition_steps, decay_rate,
 * transition_begin, staircase, end_value)`: `init * decay_rate**(t /
 * transition_steps)` after `transitionBegin`, floored with `staircase`,
 * bounded by `endValue`.
 */
export function exponentialDecay(opts: { initValue: number; transitionSteps: number; decayRate: number; transitionBegin?: number; staircase?: boolean; endValue?: number | null }): Schedule {
  const op = "exponential_decay";
  const init = checkNumber(op, "initValue", opts.initValue);
  const steps = checkNumber(op, "transitionSteps", opts.transitionSteps, { integer: true });
  const rate = checkNumber(op, "decayRate", opts.decayRate);
  let begin = checkNumber(op, "transitionBegin", opts.transitionBegin ?? 0, { integer: true });
  const end = opts.endValue === undefined || opts.endValue === null ? undefined : checkNumber(op, "endValue", opts.endValue);
  if (steps <= 0 || rate === 0) return schedule(op, () => init);
  if (begin < 0) begin = 0;
  const clipFn = rate < 1.0 ? jnp.maximum : jnp.minimum;
  return schedule(op, (count) => {
    const decreased = jnp.subtract(count, begin);
    let p = jnp.divide(decreased, steps);
    if (opts.staircase) p = jnp.floor(p);
    let value = jnp.where(jnp.lessEqual(decreased, 0), pyFloat(init), jnp.multiply(pyFloat(init), jnp.power(pyFloat(rate), p)));
    if (end !== undefined) value = clipFn(value, pyFloat(end));
    return value;
  });
}

/**
 * `optax.join_schedules(schedules, boundaries)`: `schedules[i]` from
 * `boundaries[i - 1]` on, each counting from its own start.
 */
export function joinSchedules(schedules: readonly ScheduleFn[], boundaries: readonly number[]): Schedule {
  const op = "join_schedules";
  if (schedules.length === 0) throw new BridgeInputError(`optax.${op}: needs at least one schedule`);
  if (boundaries.length !== schedules.length - 1) {
    throw new BridgeInputError(`optax.${op}: ${schedules.length} schedules need ${schedules.length - 1} boundaries, got ${boundaries.length}`);
  }
  boundaries.forEach((b, i) => checkNumber(op, `boundaries[${i}]`, b, { integer: true }));
  return schedule(op, (step) => {
    let output: Tracer | number = schedules[0]!(step);
    boundaries.forEach((boundary, i) => {
      output = jnp.where(jnp.less(step, boundary), output, schedules[i + 1]!(jnp.subtract(step, boundary)));
    });
    return output;
  });
}

/** `optax.warmup_constant_schedule(init_value, peak_value, warmup_steps)`: linear from `initValue` to `peakValue`, then constant. */
export function warmupConstantSchedule(opts: { initValue: number; peakValue: number; warmupSteps: number }): Schedule {
  return linearSchedule({ initValue: opts.initValue, endValue: opts.peakValue, transitionSteps: opts.warmupSteps });
}

/**
 * `optax.warmup_cosine_decay_schedule(init_value, peak_value, warmup_steps,
 * decay_steps, end_value, exponent)`: linear warmup to `peakValue` over
 * `warmupSteps`, then cosine decay to `endValue` at `decaySteps` (counted
 * from 0, warmup included).
 */
export function warmupCosineDecaySchedule(opts: { initValue: number; peakValue: number; warmupSteps: number; decaySteps: number; endValue?: number; exponent?: number }): Schedule {
  const op = "warmup_cosine_decay_schedule";
  const peak = checkNumber(op, "peakValue", opts.peakValue);
  const end = checkNumber(op, "endValue", opts.endValue ?? 0.0);
  const alpha = peak === 0.0 ? 0.0 : end / peak;
  return joinSchedules(
    [
      linearSchedule({ initValue: opts.initValue, endValue: peak, transitionSteps: opts.warmupSteps }),
      cosineDecaySchedule({ initValue: peak, decaySteps: opts.decaySteps - opts.warmupSteps, alpha, exponent: opts.exponent ?? 1.0 }),
    ],
    [opts.warmupSteps],
  );
}
