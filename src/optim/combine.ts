/**
 * `optax.chain`: transformations applied one after another, their states
 * kept side by side (a JS array where optax has a tuple: the same leaves in
 * the same order).
 */

import { BridgeInputError } from "../values/errors.js";
import { describe } from "../values/describe.js";
import { gradientTransformation, type GradientTransformation, type OptState } from "./base.js";

/**
 * `optax.chain(*transforms)`: `update` runs each transformation on the
 * previous one's output; the state is the array of their states, in order.
 */
export function chain(...transforms: GradientTransformation[]): GradientTransformation {
  transforms.forEach((t, i) => {
    if (typeof t !== "object" || t === null || typeof t.init !== "function" || typeof t.update !== "function") {
      throw new BridgeInputError(`optax.chain: argument ${i} is ${describe(t)}, not a GradientTransformation ({init, update})`);
    }
  });
  return gradientTransformation(
    "chain",
    (params) => transforms.map((t) => t.init(params)),
    (updates, state, params) => {
      if (!Array.isArray(state) || state.length !== transforms.length) {
        throw new BridgeInputError(
          `optax.chain: the state must be an array of ${transforms.length} states, one per transformation, got ${Array.isArray(state) ? `${state.length}` : describe(state)}; ` +
            "make sure you have called init first",
        );
      }
      const newState: OptState[] = [];
      let u = updates;
      transforms.forEach((t, i) => {
        const [next, s] = t.update(u, state[i], params) as unknown as [unknown, OptState];
        u = next;
        newState.push(s);
      });
      return [u, newState];
    },
  );
}
