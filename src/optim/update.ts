/** `optax.apply_updates`: parameters plus updates, in the parameters' dtypes. */

import type { Tracer } from "../trace/tracer.js";
import * as jnp from "../trace/lib/jnp.js";
import type { Staged } from "../trace/staged.js";
import type { DeviceResult, TracerTree } from "../trace/types.js";
import { staged } from "./base.js";
import { zipTrees } from "./tree-math.js";

function applyTraced(params: unknown, updates: unknown): unknown {
  return zipTrees("optax.apply_updates", ["the parameters", "the updates"], (p: Tracer, u: Tracer) => jnp.astype(jnp.add(p, u), jnp.asarray(p).dtype), params, updates);
}

const applyStaged = staged("optax.apply_updates", applyTraced);

export type ApplyResult<P, U> = Staged<[P, U], TracerTree<P>, DeviceResult<P>>;

/**
 * `optax.apply_updates(params, updates)`: `p + u` leaf by leaf, cast back to
 * each parameter's dtype (updates in float64 do not widen float32
 * parameters). `null` leaves stay `null`. Inside a traced function it
 * returns the tree; at top level, a Promise of it (one jitted program).
 */
export function applyUpdates<P, U>(params: P, updates: U): ApplyResult<P, U> {
  return applyStaged(params, updates) as ApplyResult<P, U>;
}
