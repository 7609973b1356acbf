/**
 * The shape of an optimizer, as optax has it: a `GradientTransformation` is
 * a pair of pure functions, `init(params) -> state` and `update(updates,
 * state, params?) -> [updates, state]`, whose states are pytrees. Here they
 * are TypeScript on the tracer, so they work in both worlds:
 *
 * - inside a traced function (jit, a filterScan body: the normal case, where
 *   a whole train step is one program) they record equations and return
 *   trees of tracers directly;
 * - at top level, on NDArrays and DeviceArrays, each method runs as one
 *   jitted program (cached per transformation and signature) and returns a
 *   Promise of the tree with DeviceArrays.
 *
 * States are built from small `Module` classes named and ordered as optax's
 * NamedTuples (`ScaleByAdamState(count, mu, nu)`), and `chain` makes a JS
 * array where optax makes a tuple, so a state's leaves come in the order of
 * optax's: a state saved with `Serializable` loads into the optax state in
 * Python with `eqx.tree_deserialise_leaves`, and back.
 */

import { Module } from "../values/module.js";
import { BridgeInputError } from "../values/errors.js";
import { currentTrace, lit, type LitOperand, requireTrace } from "../trace/core.js";
import { defaultFloat } from "../trace/dtypes.js";
import { jit, type Jitted } from "../trace/jit.js";
import type { Tracer } from "../trace/tracer.js";
import type { Staged } from "../trace/staged.js";
import type { DeviceResult, TracerTree } from "../trace/types.js";

/** An optimizer state: a pytree (Modules named after optax's states, JS arrays for optax's tuples). */
export type OptState = unknown;

/** What a top-level `init` resolves to and a traced one returns. */
export type InitResult<P> = Staged<P, OptState, OptState>;

/** `[updates, newState]`: returned directly inside a trace, a Promise at top level. */
export type UpdateResult<U> = Staged<U, [TracerTree<U>, OptState], [DeviceResult<U>, OptState]>;

/**
 * `optax.GradientTransformation`. `init(params)` builds the state;
 * `update(updates, state, params?)` transforms a gradient tree into an update
 * tree (add it to the parameters with `applyUpdates`) and returns the new
 * state. Both work inside traced code and at top level (see the module
 * comment).
 */
export interface GradientTransformation {
  init<P>(params: P): InitResult<P>;
  update<U>(updates: U, state: OptState, params?: unknown): UpdateResult<U>;
}

type AnyJitted = Jitted<unknown[], unknown>;

/**
 * A function that records equations inside a trace and runs as one cached
 * jitted program at top level (a Promise). `name` is the program's name in
 * messages and stats.
 */
export function staged<A extends unknown[], R>(name: string, traced: (...args: A) => R): (...args: A) => unknown {
  let j: AnyJitted | undefined;
  return (...args: A) => {
    if (currentTrace() !== undefined) return traced(...args);
    j ??= jit(traced as (...a: unknown[]) => unknown, { name }) as AnyJitted;
    return j(...args);
  };
}

/**
 * A GradientTransformation from its traced `init` and `update` (which may
 * assume they run inside a trace); the top-level halves are added here.
 */
export function gradientTransformation(
  name: string,
  init: (params: unknown) => OptState,
  update: (updates: unknown, state: OptState, params: unknown) => readonly [unknown, OptState],
): GradientTransformation {
  return {
    init: staged(`optax.${name}.init`, init) as GradientTransformation["init"],
    update: staged(`optax.${name}.update`, (u: unknown, s: OptState, p?: unknown) => update(u, s, p) as [unknown, OptState]) as GradientTransformation["update"],
  };
}

/** `optax.EmptyState`: the state of a stateless transformation (no leaves). */
export class EmptyState extends Module {}

/** `optax.identity()`: updates pass through unchanged; the state is an EmptyState. */
export function identity(): GradientTransformation {
  return gradientTransformation(
    "identity",
    () => new EmptyState(),
    (u, s) => [u, s],
  );
}

/**
 * A hyperparameter as optax sees it: a Python float, i.e. a weakly typed
 * float literal. A JS integer (`1`, `0`) would be a weak *int*, which takes
 * other primitives (`integer_pow` instead of `pow`, integer promotion), so
 * every float hyperparameter goes through here.
 */
export function pyFloat(v: number, op = "optax"): LitOperand {
  return lit(v, defaultFloat(requireTrace(op).x64), true);
}

/** A hyperparameter that must be a finite number, checked when the transformation is built. */
export function checkNumber(op: string, name: string, v: unknown, opts: { min?: number; positive?: boolean; integer?: boolean } = {}): number {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new BridgeInputError(`optax.${op}: ${name} must be a finite number, got ${typeof v === "number" ? v : typeof v}`);
  }
  if (opts.integer && !Number.isInteger(v)) throw new BridgeInputError(`optax.${op}: ${name} must be an integer, got ${v}`);
  if (opts.positive && !(v > 0)) throw new BridgeInputError(`optax.${op}: ${name} must be positive, got ${v}`);
  if (opts.min !== undefined && v < opts.min) throw new BridgeInputError(`optax.${op}: ${name} must be >= ${opts.min}, got ${v}`);
  return v;
}

/** A learning rate or another scheduled hyperparameter: a number, or a function of the step count. */
export type ScheduleFn = (count: Tracer) => Tracer | number;
export type ScalarOrSchedule = number | ScheduleFn;

export function checkScalarOrSchedule(op: string, name: string, v: unknown): ScalarOrSchedule {
  if (typeof v === "function") return v as ScheduleFn;
  return checkNumber(op, name, v);
}
