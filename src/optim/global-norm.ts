/** `optax.global_norm`: the L2 norm of all of a tree's leaves together. */

import type { DeviceArray } from "../values/device-array.js";
import type { Tracer } from "../trace/tracer.js";
import type { Staged } from "../trace/staged.js";
import { staged } from "./base.js";
import { globalNorm as normTraced } from "./tree-math.js";

const normStaged = staged("optax.global_norm", (tree: unknown) => normTraced(tree));

/**
 * `optax.global_norm(updates)` (`optax.tree.norm`), computed as optax does.
 * Inside a traced function it returns a scalar tracer; at top level a
 * Promise of a scalar DeviceArray. Complex leaves are refused.
 */
export function globalNorm<T>(tree: T): Staged<T, Tracer, DeviceArray> {
  return normStaged(tree) as Staged<T, Tracer, DeviceArray>;
}
