/**
 * `lax` for both worlds (./wrap.ts): every primitive of ../lax.ts, inside a
 * trace as it is, outside on device arrays at once. `rawBind`,
 * `retypeLiteral` and `checkDType` are the tracer's own helpers, not ops.
 */
export * from "../lax.js";
import * as raw from "../lax.js";
import { eagerNamespace } from "./wrap.js";

/** The ops; test/trace/eager.test.ts checks that none of ../lax.ts is missing. */
const OPS = [
  "abs", "acos", "acosh", "add", "argmax", "argmin", "asin", "asinh", "atan", "atan2", "atanh", "bitcastConvertType", "bitwiseAnd", "bitwiseNot",
  "bitwiseOr", "bitwiseXor", "broadcastInDim", "cbrt", "ceil", "clamp", "clz", "concatenate", "conj", "convertElementType", "cos", "cosh",
  "cumlogsumexp", "cummax", "cummin", "cumprod", "cumsum", "digamma", "div", "dotGeneral", "dynamicSlice", "dynamicUpdateSlice", "eq", "erf", "erfInv",
  "erfc", "exp", "exp2", "expandDims", "expm1", "floor", "gather", "ge", "gt", "imag", "integerPow", "iota", "isFinite", "le", "lgamma", "log", "log1p",
  "logistic", "lt", "max", "min", "mul", "ne", "neg", "nextafter", "pad", "populationCount", "pow", "real", "reduceAnd", "reduceMax", "reduceMin",
  "reduceOr", "reduceProd", "reduceSum", "reduceXor", "rem", "reshape", "rev", "round", "rsqrt", "scatter", "selectN", "shiftLeft",
  "shiftRightArithmetic", "shiftRightLogical", "sign", "sin", "sinh", "slice", "sort", "sqrt", "square", "squeeze", "stopGradient", "sub", "tan", "tanh",
  "transpose",
] as const;

export const {
  abs, acos, acosh, add, argmax, argmin, asin, asinh, atan, atan2, atanh, bitcastConvertType, bitwiseAnd, bitwiseNot,
  bitwiseOr, bitwiseXor, broadcastInDim, cbrt, ceil, clamp, clz, concatenate, conj, convertElementType, cos, cosh,
  cumlogsumexp, cummax, cummin, cumprod, cumsum, digamma, div, dotGeneral, dynamicSlice, dynamicUpdateSlice, eq, erf, erfInv,
  erfc, exp, exp2, expandDims, expm1, floor, gather, ge, gt, imag, integerPow, iota, isFinite, le, lgamma, log, log1p,
  logistic, lt, max, min, mul, ne, neg, nextafter, pad, populationCount, pow, real, reduceAnd, reduceMax, reduceMin,
  reduceOr, reduceProd, reduceSum, reduceXor, rem, reshape, rev, round, rsqrt, scatter, selectN, shiftLeft,
  shiftRightArithmetic, shiftRightLogical, sign, sin, sinh, slice, sort, sqrt, square, squeeze, stopGradient, sub, tan, tanh,
  transpose,
} = eagerNamespace("lax", raw, OPS);
