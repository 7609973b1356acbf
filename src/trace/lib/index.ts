/**
 * The op library on the tracer core, in JAX's namespaces: `jnp`, `lax`,
 * `nn`, `random`. Each works in both worlds (eager/wrap.ts): inside a
 * traced function it records equations; outside, on DeviceArrays, NDArrays
 * and numbers, it runs at once on the sidecar and returns DeviceArrays.
 * Loading it installs the array methods on `Tracer` (array-methods.ts) and
 * on `DeviceArray` (eager/methods.ts), as importing `jax.numpy` does on
 * `jax.Array`.
 */
import { installEagerMethods } from "./eager/methods.js";

// Re-exported so that the declaration files reference eager/methods.d.ts, whose
// augmentation types the array methods on DeviceArray for a package's users.
export { installEagerMethods };

export * as jnp from "./eager/jnp.js";
export * as lax from "./eager/lax.js";
export * as nn from "./eager/nn.js";
export * as random from "./eager/random.js";
export { installArrayMethods, type ArrayMethods, type AtMethods } from "./array-methods.js";
export { shardMap, type ShardMapOptions } from "./sharding.js";

installEagerMethods();
