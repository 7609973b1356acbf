/**
 * `jnp` for both worlds (./wrap.ts): every op of ../jnp.ts, inside a trace
 * as it is, outside on device arrays at once. Types, classes and helpers
 * that are not ops come from ../jnp.ts unchanged.
 */
export * from "../jnp.js";
import * as raw from "../jnp.js";
import { eagerNamespace } from "./wrap.js";

/** The ops (every function of ../jnp.ts but `slice`, the promotion helpers and the classes); test/trace/eager.test.ts checks that none is missing. */
const OPS = [
  "abs", "absolute", "add", "all", "any", "arange", "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "argmax", "argmin",
  "array", "asarray", "astype", "bitwiseAnd", "bitwiseNot", "bitwiseOr", "bitwiseXor", "broadcastArrays", "broadcastTo", "cbrt", "ceil", "clip",
  "concatenate", "cos", "cosh", "cumprod", "cumsum", "divide", "dot", "einsum", "equal", "exp", "exp2", "expandDims", "expm1", "eye", "flip", "floor",
  "floorDivide", "full", "fullLike", "getItem", "greater", "greaterEqual", "invert", "isfinite", "isinf", "isnan", "leftShift", "less", "lessEqual",
  "linspace", "log", "log10", "log1p", "log2", "logaddexp", "logicalAnd", "logicalNot", "logicalOr", "logicalXor", "logsumexp", "matmul", "max",
  "maxInitial", "maximum", "mean", "min", "minimum", "mod", "moveaxis", "multiply", "negative", "notEqual", "ones", "onesLike", "outer", "positive",
  "pow", "power", "prod", "ravel", "reciprocal", "remainder", "reshape", "round", "rsqrt", "sign", "sin", "sinh", "sqrt", "square", "squeeze", "stack",
  "std", "subtract", "sum", "swapaxes", "take", "tan", "tanh", "transpose", "trueDivide", "trunc", "unstack", "var_", "variance", "where", "zeros",
  "zerosLike",
] as const;

export const {
  abs, absolute, add, all, any, arange, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, argmax, argmin,
  array, asarray, astype, bitwiseAnd, bitwiseNot, bitwiseOr, bitwiseXor, broadcastArrays, broadcastTo, cbrt, ceil, clip,
  concatenate, cos, cosh, cumprod, cumsum, divide, dot, einsum, equal, exp, exp2, expandDims, expm1, eye, flip, floor,
  floorDivide, full, fullLike, getItem, greater, greaterEqual, invert, isfinite, isinf, isnan, leftShift, less, lessEqual,
  linspace, log, log10, log1p, log2, logaddexp, logicalAnd, logicalNot, logicalOr, logicalXor, logsumexp, matmul, max,
  maxInitial, maximum, mean, min, minimum, mod, moveaxis, multiply, negative, notEqual, ones, onesLike, outer, positive,
  pow, power, prod, ravel, reciprocal, remainder, reshape, round, rsqrt, sign, sin, sinh, sqrt, square, squeeze, stack,
  std, subtract, sum, swapaxes, take, tan, tanh, transpose, trueDivide, trunc, unstack, var_, variance, where, zeros,
  zerosLike,
} = eagerNamespace("jnp", raw, OPS);
