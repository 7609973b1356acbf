/**
 * Generated jax.nn and jax.random cases: activations over the float dtypes
 * with special values, and sampler chains with random seeds, shapes and
 * dtypes. test/trace/lib/nn-random.test.ts traces them (against jax.jit);
 * test/trace/eager.test.ts runs them eagerly (against jax.nn / jax.random op
 * by op).
 */
import type { DType } from "../../../src/values/dtype.js";
import { array as hostArray } from "../../../src/values/ndarray.js";
import { canonicalize } from "../../../src/trace/dtypes.js";
import { jnp, nn, random } from "../../../src/trace/lib/index.js";
import type { Case } from "./cases.js";
import { pick, randInt, randomArray, rng } from "./oracle.js";

export const ACTIVATIONS: [string, (x: jnp.ArrayLike) => ReturnType<typeof nn.relu>, string][] = [
  ["relu", nn.relu, "nn.relu"],
  ["relu6", nn.relu6, "nn.relu6"],
  ["sigmoid", nn.sigmoid, "nn.sigmoid"],
  ["softplus", nn.softplus, "nn.softplus"],
  ["logSigmoid", nn.logSigmoid, "nn.log_sigmoid"],
  ["silu", nn.silu, "nn.silu"],
  ["mish", nn.mish, "nn.mish"],
  ["gelu", (x) => nn.gelu(x), "nn.gelu"],
  ["gelu exact", (x) => nn.gelu(x, false), "(lambda x: nn.gelu(x, approximate=False))"],
  ["elu", (x) => nn.elu(x), "nn.elu"],
  ["elu 0.5", (x) => nn.elu(x, 0.5), "(lambda x: nn.elu(x, 0.5))"],
  ["leakyRelu", (x) => nn.leakyRelu(x), "nn.leaky_relu"],
  ["hardTanh", nn.hardTanh, "nn.hard_tanh"],
  ["celu", (x) => nn.celu(x), "nn.celu"],
  ["selu", nn.selu, "nn.selu"],
  ["hardSigmoid", nn.hardSigmoid, "nn.hard_sigmoid"],
  ["hardSwish", nn.hardSwish, "nn.hard_swish"],
  ["softSign", nn.softSign, "nn.soft_sign"],
  ["softmax", (x) => nn.softmax(x), "nn.softmax"],
  ["softmax axis 0", (x) => nn.softmax(x, { axis: 0 }), "(lambda x: nn.softmax(x, axis=0))"],
  ["logSoftmax", (x) => nn.logSoftmax(x), "nn.log_softmax"],
  ["logsumexp", (x) => nn.logsumexp(x, { axis: -1 }), "(lambda x: nn.logsumexp(x, axis=-1))"],
  ["logsumexp all keepdims", (x) => nn.logsumexp(x, { keepdims: true }), "(lambda x: nn.logsumexp(x, keepdims=True))"],
];

/** Every activation over every float dtype of the mode, on random values with specials. */
export function activationCases(x64: boolean, seed = x64 ? 91 : 92): Case[] {
  const r = rng(seed);
  const cases: Case[] = [];
  for (const [name, ts, py] of ACTIVATIONS) {
    for (const dtype of ["float32", "bfloat16", "float16", "float64"] as DType[]) {
      if (canonicalize(dtype, x64) !== dtype) continue;
      const a = randomArray(r, dtype, [3, 4], { specials: !name.includes("softmax") || r() < 0.5 });
      cases.push({ desc: `${name}(${dtype})`, args: [a], ts: ([x]) => ts(x!), py: `${py}(x0)` });
    }
  }
  return cases;
}

export function oneHotCases(): Case[] {
  const idx = hostArray([0, 2, 1, 3], "int32");
  return [
    { desc: "one_hot", args: [idx], ts: ([x]) => nn.oneHot(x!, 4), py: "nn.one_hot(x0, 4)" },
    { desc: "one_hot axis 0 int", args: [idx], ts: ([x]) => nn.oneHot(x!, 5, { axis: 0, dtype: "int32" }), py: "nn.one_hot(x0, 5, axis=0, dtype=jnp.int32)" },
  ];
}

/** `n` sampler calls with random seeds, shapes and dtypes, and split / fold_in chains. */
export function randomCases(x64: boolean, n = 30, rngSeed = x64 ? 101 : 102): Case[] {
  const r = rng(rngSeed);
  const floats: DType[] = x64 ? ["float32", "float64", "float16", "bfloat16"] : ["float32", "float16", "bfloat16"];
  const cases: Case[] = [];
  for (let i = 0; i < n; i++) {
    const seed = hostArray([randInt(r, 0, 2 ** 31 - 1)], "int32", []);
    const shape = pick(r, [[], [3], [2, 3], [4, 1, 2]]);
    const dtype = pick(r, floats);
    const kind = pick(r, ["uniform", "normal", "bernoulli", "categorical", "split", "fold_in", "bits", "gumbel", "uniform_range"] as const);
    const pyShape = `(${shape.join(", ")}${shape.length === 1 ? "," : ""})`;
    const dt = `jnp.${dtype}`;
    switch (kind) {
      case "uniform":
        cases.push({ desc: `uniform ${dtype}${JSON.stringify(shape)}`, args: [seed], ts: ([s]) => random.uniform(random.key(s!), shape, { dtype }), py: `random.uniform(random.key(x0), ${pyShape}, ${dt})` });
        break;
      case "uniform_range":
        cases.push({ desc: `uniform range ${dtype}`, args: [seed], ts: ([s]) => random.uniform(random.key(s!), shape, { dtype, minval: -3, maxval: 0.5 }), py: `random.uniform(random.key(x0), ${pyShape}, ${dt}, minval=-3, maxval=0.5)` });
        break;
      case "normal":
        cases.push({ desc: `normal ${dtype}${JSON.stringify(shape)}`, args: [seed], ts: ([s]) => random.normal(random.key(s!), shape, { dtype }), py: `random.normal(random.key(x0), ${pyShape}, ${dt})` });
        break;
      case "gumbel":
        cases.push({ desc: `gumbel ${dtype}`, args: [seed], ts: ([s]) => random.gumbel(random.key(s!), shape, { dtype }), py: `random.gumbel(random.key(x0), ${pyShape}, ${dt})` });
        break;
      case "bernoulli": {
        const p = pick(r, [0.1, 0.5, 0.9]);
        cases.push({ desc: `bernoulli ${p}`, args: [seed], ts: ([s]) => random.bernoulli(random.key(s!), p, shape), py: `random.bernoulli(random.key(x0), ${p}, ${pyShape})` });
        break;
      }
      case "categorical": {
        const logits = randomArray(r, "float32", [3, 5], { lo: -2, hi: 2 });
        const axis = pick(r, [-1, 0]);
        cases.push({ desc: `categorical axis ${axis}`, args: [seed, logits], ts: ([s, l]) => random.categorical(random.key(s!), l!, { axis }), py: `random.categorical(random.key(x0), x1, axis=${axis})` });
        break;
      }
      case "split":
        cases.push({ desc: "split chain", args: [seed], ts: ([s]) => random.split(random.split(random.key(s!)).get(1), 3), py: "random.key_data(random.split(random.split(random.key(x0))[1], 3))" });
        break;
      case "fold_in":
        cases.push({ desc: "fold_in", args: [seed], ts: ([s]) => random.normal(random.foldIn(random.key(s!), 17), shape), py: `random.normal(random.fold_in(random.key(x0), 17), ${pyShape})` });
        break;
      case "bits":
        cases.push({ desc: "bits", args: [seed], ts: ([s]) => random.bits(random.key(s!), shape), py: `random.bits(random.key(x0), ${pyShape})` });
        break;
    }
  }
  return cases;
}
