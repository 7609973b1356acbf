/**
 * A multilayer perceptron laid out as `eqx.nn.MLP` (its `layers`, each with
 * `weight` `[out, in]` and `bias` `[out]`: the arrays equinox saves, in the
 * same order), with ReLU between layers, applied to a batch `[B, in]`; and
 * equinox's initialisation of it. Used by examples/dqn-cartpole.ts and
 * examples/digits.ts.
 */
import { jnp, Module, nn, random, Serializable, zerosHost, type DeviceArray, type NDArray, type Tracer } from "../src/index.js";

export type Arr = Tracer | NDArray | DeviceArray;

/** `eqx.nn.Linear`'s layout. */
export class Linear extends Module {
  constructor(
    public weight: Arr,
    public bias: Arr,
  ) {
    super();
  }
}

export class MLP extends Serializable {
  layers: Linear[];
  /** The layers, or the layer sizes for a skeleton of zeros (what `deserialize` fills in). */
  constructor(layers: Linear[] | readonly number[]) {
    super();
    const sizes = layers as readonly number[];
    this.layers = layers.every((l) => typeof l === "number")
      ? sizes.slice(1).map((out, i) => new Linear(zerosHost([out, sizes[i]!], "float32"), zerosHost([out], "float32")))
      : (layers as Linear[]);
  }

  apply(x: Arr): Tracer {
    let h = x as Tracer;
    this.layers.forEach((l, i) => {
      h = jnp.add(jnp.matmul(h, jnp.transpose(l.weight)), l.bias);
      if (i < this.layers.length - 1) h = nn.relu(h);
    });
    return h;
  }
}

/**
 * `eqx.nn.MLP(sizes[0], sizes.at(-1), ...)`'s initialisation, in float32:
 * one key per layer, then a weight key and a bias key, uniform in
 * ±1/sqrt(fan_in).
 */
export function initMlp(key: Tracer, sizes: readonly number[]): MLP {
  const keys = random.split(key, sizes.length - 1);
  return new MLP(
    sizes.slice(1).map((out, i) => {
      const wb = random.split(keys.get(i), 2);
      const lim = 1 / Math.sqrt(sizes[i]!);
      return new Linear(
        random.uniform(wb.get(0), [out, sizes[i]!], { dtype: "float32", minval: -lim, maxval: lim }),
        random.uniform(wb.get(1), [out], { dtype: "float32", minval: -lim, maxval: lim }),
      );
    }),
  );
}
