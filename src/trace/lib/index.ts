/**
 * The op library on the tracer core, in JAX's namespaces: `jnp`, `lax`,
 * `nn`, `random`. Loading it installs the array methods on `Tracer`
 * (array-methods.ts), as importing `jax.numpy` does on `jax.Array`.
 */
export * as jnp from "./jnp.js";
export * as lax from "./lax.js";
export * as nn from "./nn.js";
export * as random from "./random.js";
export { installArrayMethods, type ArrayMethods } from "./array-methods.js";
export { shardMap, type ShardMapOptions } from "./sharding.js";
