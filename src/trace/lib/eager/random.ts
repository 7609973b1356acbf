/** `random` for both worlds (./wrap.ts): every sampler of ../random.ts (`keyData`, a host-side helper, is not an op). */
export * from "../random.js";
import * as raw from "../random.js";
import { eagerNamespace } from "./wrap.js";

/** The ops; test/trace/eager.test.ts checks that none of ../random.ts is missing. */
const OPS = ["PRNGKey", "bernoulli", "bits", "categorical", "foldIn", "gumbel", "key", "normal", "split", "uniform"] as const;

export const { PRNGKey, bernoulli, bits, categorical, foldIn, gumbel, key, normal, split, uniform } = eagerNamespace("random", raw, OPS);
