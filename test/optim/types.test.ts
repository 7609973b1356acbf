/**
 * The optimizers' result types, as a user's code sees them (checked by
 * `tsc --noEmit`, run here so a regression also fails mocha's type-aware
 * run): inside a traced function `update` returns `[updates, state]` at
 * once with tracer leaves; at top level a Promise with DeviceArray leaves.
 */
import assert from "node:assert/strict";
import type { DeviceArray } from "../../src/values/device-array.js";
import type { Tracer } from "../../src/trace/tracer.js";
import * as optax from "../../src/optim/index.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const expectType = <T>(_: T): void => undefined;

function traced(params: { w: Tracer; b: Tracer }, grads: { w: Tracer; b: Tracer }, state: optax.OptState) {
  const opt = optax.adam(1e-3);
  const [updates, next] = opt.update(grads, state, params);
  const check: Equal<typeof updates, { w: Tracer; b: Tracer }> = true;
  const p = optax.applyUpdates(params, updates);
  expectType<{ w: Tracer; b: Tracer }>(p);
  expectType<optax.OptState>(next);
  return check;
}

async function topLevel(params: { w: DeviceArray }, grads: { w: DeviceArray }) {
  const opt = optax.sgd(0.1, { momentum: 0.9 });
  const state = await opt.init(params);
  const [updates, next] = await opt.update(grads, state, params);
  const check: Equal<typeof updates, { w: DeviceArray }> = true;
  const p: { w: DeviceArray } = await optax.applyUpdates(params, updates);
  const norm: DeviceArray = await optax.globalNorm(grads);
  const lr: number = await optax.cosineDecaySchedule({ initValue: 1e-3, decaySteps: 100 })(10);
  return [check, p, next, norm, lr];
}

describe("optax: result types", () => {
  it("inside a trace: [updates, state] at once; at top level: a Promise of DeviceArrays (type-checked)", () => {
    assert.equal(typeof traced, "function");
    assert.equal(typeof topLevel, "function");
  });
});
