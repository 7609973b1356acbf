/** `nn` for both worlds (./wrap.ts): every function of ../nn.ts. */
export * from "../nn.js";
import * as raw from "../nn.js";
import { eagerNamespace } from "./wrap.js";

/** The ops; test/trace/eager.test.ts checks that none of ../nn.ts is missing. */
const OPS = [
  "celu", "elu", "gelu", "hardSigmoid", "hardSilu", "hardSwish", "hardTanh", "leakyRelu", "logSigmoid", "logSoftmax", "logsumexp", "mish", "oneHot",
  "relu", "relu6", "selu", "sigmoid", "silu", "softSign", "softmax", "softplus", "swish",
] as const;

export const {
  celu, elu, gelu, hardSigmoid, hardSilu, hardSwish, hardTanh, leakyRelu, logSigmoid, logSoftmax, logsumexp, mish, oneHot,
  relu, relu6, selu, sigmoid, silu, softSign, softmax, softplus, swish,
} = eagerNamespace("nn", raw, OPS);
