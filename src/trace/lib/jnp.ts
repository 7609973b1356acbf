/**
 * `jnp`: NumPy semantics on tracers, following `jax.numpy` operation by
 * operation (the same lax primitives in the same order, so results match
 * Python JAX bit for bit on one backend). Promotion (weak types included)
 * and broadcasting are made explicit here; lax.ts records the primitives.
 */

import type { DType } from "../../values/dtype.js";
import { NDArray, array as hostArray } from "../../values/ndarray.js";
import { describe } from "../../values/describe.js";
import type { Concrete, In } from "../core.js";
import { asTracer, avalOf, isConcrete, NESTED_HINT, isLitOperand, isWeak, lit, type LitOperand, requireTrace } from "../core.js";
import { Tracer } from "../tracer.js";
import * as lax from "./lax.js";
import { customJvpFlat } from "./transforms-flat.js";
import { traceError } from "../errors.js";
import {
  canonicalize,
  defaultFloat,
  defaultInt,
  defaultUint,
  isJsScalar,
  kindOf,
  type JsScalar,
  resultType,
  scalarType,
  type Typed,
  TypePromotionError,
} from "../dtypes.js";
import { broadcastShapes, normAxes, normAxis, prod as shapeProd, resolveShape, sameShape, type Shape, showShape } from "../shapes.js";
import { showAval } from "../ir.js";

/** An operand of a jnp function: a tracer, a captured concrete array, or a JS scalar (weakly typed). */
export type ArrayLike = Tracer | Concrete | JsScalar | LitOperand;
/** Inside the tracer, literal operands flow through the same functions. */
type AnyArg = ArrayLike;

export interface AxisArg {
  axis?: number | readonly number[] | null;
  keepdims?: boolean;
  dtype?: DType;
}

const x64 = (op: string): boolean => requireTrace(op).x64;

// --- promotion ----------------------------------------------------------------------

function typedOf(x: AnyArg, is64: boolean): Typed {
  if (isJsScalar(x)) return scalarType(x, is64);
  if (isLitOperand(x)) return { dtype: x.literal.dtype, weak: x.weak };
  if (x instanceof Tracer) return { dtype: x.dtype, weak: x.weak };
  if (isConcrete(x)) return { dtype: x.dtype, weak: false };
  throw new TypeError(describe(x, "kind"));
}

function checkArrayLike(op: string, xs: readonly unknown[]): void {
  xs.forEach((x, i) => {
    if (!(x instanceof Tracer) && !isConcrete(x) && !isJsScalar(x) && !isLitOperand(x)) {
      throw traceError(op, `argument ${i} is ${describe(x, "kind")}${NESTED_HINT(x)}; expected a Tracer, DeviceArray, NDArray or JS number/boolean/bigint`);
    }
  });
}

const TO_INEXACT: Partial<Record<DType, DType>> = {
  bool: "float32",
  int8: "float32",
  uint8: "float32",
  int16: "float32",
  uint16: "float32",
  int32: "float32",
  uint32: "float32",
  int64: "float64",
  uint64: "float64",
};

/** `dtypes.to_inexact_dtype` (note: int32 becomes float32 even with x64). */
export function toInexact(d: DType, is64: boolean): DType {
  return canonicalize(TO_INEXACT[d] ?? d, is64);
}

/** A tracer (or captured array) converted to `dtype` with weakness `weak` (a free re-tag when only weakness changes). */
export function convertTo(op: string, x: Tracer | Concrete, dtype: DType, weak: boolean): Tracer {
  const t = asTracer(op, x);
  if (t.dtype === dtype) return t.weak === weak ? t : new Tracer(t.trace, t.v, weak && dtype !== "bool");
  return lax.convertElementType(t, dtype, weak && dtype !== "bool");
}

type PromoteMode = "plain" | "inexact" | "numeric";

/** `promote_dtypes` / `_inexact` / `_numeric`: every operand in the result dtype; JS scalars become literals. */
export function promote(op: string, xs: readonly AnyArg[], mode: PromoteMode = "plain"): { ins: In[]; dtype: DType; weak: boolean } {
  checkArrayLike(op, xs);
  const is64 = x64(op);
  let r: Typed;
  try {
    r = resultType(
      xs.map((x) => typedOf(x, is64)),
      is64,
    );
  } catch (e) {
    if (e instanceof TypePromotionError) throw traceError(op, e.message);
    throw e;
  }
  let dtype = r.dtype;
  if (mode === "inexact") dtype = toInexact(dtype, is64);
  if (mode === "numeric" && dtype === "bool") dtype = "int32";
  const weak = r.weak && dtype !== "bool";
  const ins = xs.map((x): In => {
    if (isJsScalar(x)) return lit(x, dtype, weak);
    if (isLitOperand(x)) return x.literal.dtype === dtype ? { literal: x.literal, weak } : retypeLiteral(op, x, dtype, weak);
    return convertTo(op, x, dtype, weak);
  });
  return { ins, dtype, weak };
}

/** Broadcast operands to one shape. Rank-0 operands stay scalars unless `full` (lax takes them as they are). */
export function broadcastIns(op: string, xs: readonly In[], full = false): In[] {
  const shapes = xs.map((x) => avalOf(x).shape);
  const shape = broadcastShapes(op, shapes);
  if (!full) {
    // jnp's promote_shapes: operands of one rank (or scalars beside one rank) go to lax as they are,
    // which broadcasts scalars and size-1 axes itself; otherwise each is brought to the result's rank
    // (lax.broadcast_to_rank). Derivatives depend on it: JAX transposes what it was given.
    const ranks = new Set(shapes.filter((s) => s.length > 0).map((s) => s.length));
    if (shapes.every((s) => s.length === shapes[0]!.length) || ranks.size < 2) return [...xs];
    return xs.map((x) => {
      const s = avalOf(x).shape;
      if (s.length === shape.length) return x;
      const lead = shape.length - s.length;
      return lax.broadcastInDim(x as Tracer, [...new Array<number>(lead).fill(1), ...s], s.map((_, i) => lead + i));
    });
  }
  return xs.map((x) => {
    const s = avalOf(x).shape;
    if (sameShape(s, shape)) return x;
    return broadcastTo1(x, shape);
  });
}

function broadcastTo1(x: In, shape: Shape): Tracer {
  const s = avalOf(x).shape;
  const lead = shape.length - s.length;
  // Size-1 axes that grow are dropped first, as jnp's _broadcast_to does (squeeze, then broadcast_in_dim).
  const keep = s.map((d, i) => !(d === 1 && shape[lead + i] !== 1));
  let y: In = x;
  if (keep.some((k) => !k) && !isLitOperand(x)) {
    y = lax.reshape(x as Tracer, s.filter((_, i) => keep[i]));
  }
  const dims = s.map((_, i) => lead + i).filter((_, i) => keep[i] || isLitOperand(x));
  return lax.broadcastInDim(y as Tracer, shape, dims);
}

/** A literal converted to another dtype: ints and bools exactly; a float literal through a convert eqn (JAX rounds in XLA). */
function retypeLiteral(op: string, x: LitOperand, dtype: DType, weak: boolean): In {
  const k = kindOf(x.literal.dtype);
  if (k === "i" || k === "u" || k === "b") return lax.retypeLiteral(x, dtype, weak);
  void op;
  return lax.convertElementType(lax.broadcastInDim(x, [], []), dtype, weak);
}

function elementwise(op: string, xs: readonly AnyArg[], mode: PromoteMode, f: (...ins: In[]) => Tracer): Tracer {
  const { ins } = promote(op, xs, mode);
  return f(...broadcastIns(op, ins));
}

// Lax functions accept In (tracer or literal); these adapters keep TypeScript quiet.
type LaxUnary = (x: lax.LaxArg) => Tracer;
type LaxBinary = (x: lax.LaxArg, y: lax.LaxArg) => Tracer;
const L = (x: In): lax.LaxArg => x as unknown as lax.LaxArg;

function unaryInexact(name: string, f: LaxUnary) {
  return (x: ArrayLike): Tracer => elementwise(name, [x], "inexact", (a) => f(L(a)));
}
function unaryPlain(name: string, f: LaxUnary) {
  return (x: ArrayLike): Tracer => elementwise(name, [x], "plain", (a) => f(L(a)));
}
function binaryPlain(name: string, f: LaxBinary) {
  return (x: ArrayLike, y: ArrayLike): Tracer => elementwise(name, [x, y], "plain", (a, b) => f(L(a), L(b)));
}
function binaryInexact(name: string, f: LaxBinary) {
  return (x: ArrayLike, y: ArrayLike): Tracer => elementwise(name, [x, y], "inexact", (a, b) => f(L(a), L(b)));
}

// --- array creation -------------------------------------------------------------------

/** `jnp.asarray`: a tracer for a tracer, a captured input for a DeviceArray/NDArray, a constant for a JS scalar or nested list. */
export function asarray(x: AnyArg | readonly unknown[], dtype?: DType): Tracer {
  const op = "asarray";
  const is64 = x64(op);
  if (Array.isArray(x)) {
    // Nested JS lists follow jnp.array's defaults for the mode (int64/float64 with x64).
    const inferred = hostArray(x as never).dtype;
    const dflt: Partial<Record<DType, DType>> = { int32: defaultInt(is64), float32: defaultFloat(is64), complex64: is64 ? "complex128" : "complex64" };
    const d = canonicalize(dtype ?? dflt[inferred] ?? inferred, is64);
    return convertTo(op, hostArray(x as never, d), d, false);
  }
  if (isLitOperand(x)) {
    const t = lax.broadcastInDim(x, [], []);
    return dtype ? convertTo(op, t, canonicalize(dtype, is64), false) : t;
  }
  if (isJsScalar(x)) {
    const t = scalarType(x, is64);
    const d = dtype ? canonicalize(dtype, is64) : t.dtype;
    return lax.broadcastInDim(lit(x, d, false), [], []);
  }
  const t = asTracer(op, x as Tracer | Concrete);
  return dtype ? convertTo(op, t, canonicalize(dtype, is64), false) : t;
}
export const array = asarray;

/** `jnp.full(shape, fill, dtype?)`: a JS scalar fill without dtype is weakly typed, as in JAX. */
export function full(shape: Shape | number, fillValue: ArrayLike, dtype?: DType): Tracer {
  const op = "full";
  const is64 = x64(op);
  const s = typeof shape === "number" ? [shape] : [...shape];
  if (isJsScalar(fillValue)) {
    const t = scalarType(fillValue, is64);
    const d = dtype ? canonicalize(dtype, is64) : t.dtype;
    const weak = dtype ? false : t.weak;
    return lax.broadcastInDim(lit(fillValue, d, weak), s, []);
  }
  if (isLitOperand(fillValue)) {
    const l = dtype ? lax.retypeLiteral(fillValue, canonicalize(dtype, is64), false) : fillValue;
    return lax.broadcastInDim(l, s, []);
  }
  const v = dtype ? convertTo(op, fillValue, canonicalize(dtype, is64), false) : asTracer(op, fillValue);
  return broadcastTo(v, s);
}
export function zeros(shape: Shape | number, dtype?: DType): Tracer {
  return full(shape, 0, dtype ?? defaultFloat(x64("zeros")));
}
export function ones(shape: Shape | number, dtype?: DType): Tracer {
  return full(shape, 1, dtype ?? defaultFloat(x64("ones")));
}
export function fullLike(x: ArrayLike, fillValue: ArrayLike, dtype?: DType): Tracer {
  const t = typedOf(x, x64("full_like"));
  const shape = isJsScalar(x) || isLitOperand(x) ? [] : (x as Tracer | Concrete).shape;
  return full(shape, fillValue, dtype ?? t.dtype);
}
export const zerosLike = (x: ArrayLike, dtype?: DType): Tracer => fullLike(x, 0, dtype);
export const onesLike = (x: ArrayLike, dtype?: DType): Tracer => fullLike(x, 1, dtype);

/** `jnp.arange(stop)` / `(start, stop, step?)` with static bounds: iota, scaled and shifted as JAX does. */
export function arange(start: number, stop?: number | null, step?: number | null, dtype?: DType): Tracer {
  const op = "arange";
  const is64 = x64(op);
  if (stop === undefined || stop === null) {
    stop = start;
    start = 0;
  }
  const st = step ?? 1;
  if (st === 0) throw traceError(op, "step cannot be 0");
  const allInt = [start, stop, st].every((v) => Number.isSafeInteger(v));
  const d = dtype ? canonicalize(dtype, is64) : allInt ? defaultInt(is64) : defaultFloat(is64);
  const n = Math.max(0, Math.ceil((stop - start) / st));
  if (kindOf(d) !== "f" && kindOf(d) !== "c" && !allInt) throw traceError(op, `integer dtype ${d} with non-integer bounds`);
  let out = lax.iota(d, n);
  if (st !== 1) out = lax.mul(lit(st, d, false), out);
  if (start !== 0 || st !== 1 || kindOf(d) === "f") {
    if (!(start === 0 && kindOf(d) !== "f")) out = lax.add(lit(start, d, false), out);
  }
  return out;
}

/** `jnp.linspace(start, stop, num, {endpoint, dtype})` for scalar bounds, as jnp computes it. */
export function linspace(start: ArrayLike, stop: ArrayLike, num = 50, opts: { endpoint?: boolean; dtype?: DType } = {}): Tracer {
  const op = "linspace";
  const is64 = x64(op);
  const endpoint = opts.endpoint ?? true;
  if (!Number.isInteger(num) || num < 0) throw traceError(op, `num must be a non-negative integer, got ${num}`);
  const rt = resultType([typedOf(start, is64), typedOf(stop, is64)], is64);
  const dtype = opts.dtype ? canonicalize(opts.dtype, is64) : toInexact(rt.dtype, is64);
  const cdt = toInexact(dtype, is64);
  const s = astype(asarray(start), cdt);
  const e = astype(asarray(stop), cdt);
  if (s.ndim !== 0 || e.ndim !== 0) throw traceError(op, "only scalar start and stop are supported");
  const div = endpoint ? num - 1 : num;
  let out: Tracer;
  if (num > 1) {
    const io = lax.iota(cdt, div);
    const stepv = lax.div(io, lit(div, cdt));
    // As jnp: bounds reshaped to [1], lax broadcasts the size-1 axis. (XLA folds constant
    // subgraphs with algebraic rewrites, so even equivalent graphs can round differently.)
    const a = lax.mul(lax.reshape(s, [1]), lax.sub(lit(1, cdt, true), stepv));
    const b = lax.mul(lax.div(lax.reshape(e, [1]), lit(div, cdt)), io);
    out = lax.add(a, b);
    if (endpoint) out = lax.concatenate([out, lax.expandDims(e, [0])], 0);
  } else if (num === 1) {
    out = lax.reshape(s, [1]);
  } else {
    out = zeros([0], cdt);
  }
  if (kindOf(dtype) === "i" || kindOf(dtype) === "u") out = lax.floor(out);
  return out.dtype === dtype ? out : lax.convertElementType(out, dtype);
}

/** `jnp.eye(n, m?, {k, dtype})`. */
export function eye(n: number, m?: number | null, opts: { k?: number; dtype?: DType } = {}): Tracer {
  const is64 = x64("eye");
  const cols = m ?? n;
  const dtype = canonicalize(opts.dtype ?? defaultFloat(is64), is64);
  const d = defaultInt(false);
  const r = lax.iota(d, [n, cols], 0);
  const c = lax.iota(d, [n, cols], 1);
  const eq = lax.eq(lax.add(r, lit(opts.k ?? 0, d)), c);
  return lax.convertElementType(eq, dtype);
}

// --- elementwise math -------------------------------------------------------------------

export function add(x: ArrayLike, y: ArrayLike): Tracer {
  return elementwise("add", [x, y], "plain", (a, b) => (avalOf(a).dtype === "bool" ? lax.bitwiseOr(L(a), L(b)) : lax.add(L(a), L(b))));
}
export function subtract(x: ArrayLike, y: ArrayLike): Tracer {
  return elementwise("subtract", [x, y], "plain", (a, b) => {
    if (avalOf(a).dtype === "bool") throw traceError("subtract", "boolean subtract is not supported; use jnp.logicalXor or jnp.bitwiseXor");
    return lax.sub(L(a), L(b));
  });
}
export function multiply(x: ArrayLike, y: ArrayLike): Tracer {
  return elementwise("multiply", [x, y], "plain", (a, b) => (avalOf(a).dtype === "bool" ? lax.bitwiseAnd(L(a), L(b)) : lax.mul(L(a), L(b))));
}
export const divide = binaryInexact("true_divide", (x, y) => lax.div(x, y));
export const trueDivide = divide;

export function floorDivide(x: ArrayLike, y: ArrayLike): Tracer {
  return elementwise("floor_divide", [x, y], "numeric", (a, b) => {
    const d = avalOf(a).dtype;
    if (kindOf(d) === "u") return lax.div(L(a), L(b));
    if (kindOf(d) === "i") {
      const q = lax.div(L(a), L(b));
      const sel = lax.bitwiseAnd(lax.ne(lax.sign(L(a)), lax.sign(L(b))), lax.ne(lax.rem(L(a), L(b)), lit(0, d)));
      return where(sel, lax.sub(q, lit(1, d, isWeakIn(a) && isWeakIn(b))), q);
    }
    if (kindOf(d) === "c") throw traceError("floor_divide", "complex inputs are not supported");
    return floatDivmod(a, b)[0];
  });
}

const isWeakIn = isWeak;

function floatDivmod(a: In, b: In): [Tracer, Tracer] {
  const d = avalOf(a).dtype;
  let mod = lax.rem(L(a), L(b));
  const corrected = where(lax.eq(L(b), lit(0, d)), L(a), lax.sub(L(a), mod));
  let div = lax.div(corrected, L(b));
  const ind = lax.bitwiseAnd(lax.ne(mod, lit(0, d)), lax.ne(lax.sign(L(b)), lax.sign(mod)));
  mod = lax.selectN(ind, mod, lax.add(mod, L(b)));
  div = lax.selectN(ind, div, lax.sub(div, lit(1, d, true)));
  return [lax.round(div), mod];
}

/** `jnp.remainder` / `jnp.mod`: the sign of the divisor, like Python's `%`. */
export function remainder(x: ArrayLike, y: ArrayLike): Tracer {
  return elementwise("remainder", [x, y], "numeric", (a, b0) => {
    const d = avalOf(a).dtype;
    let b: lax.LaxArg = L(b0);
    if (kindOf(d) === "i" || kindOf(d) === "u") {
      if (isLitOperand(b0)) b = b0.literal.lit === "0" ? lit(1, d, b0.weak) : b0;
      else b = where(lax.eq(b0 as Tracer, lit(0, d)), onesLike(b0 as Tracer), b0 as Tracer);
    }
    const trunc = lax.rem(L(a), b);
    const nz = lax.ne(trunc, lit(0, d));
    const doPlus = lax.bitwiseAnd(lax.ne(lax.lt(trunc, lit(0, d)), lax.lt(b, lit(0, d))), nz);
    return lax.selectN(doPlus, trunc, lax.add(trunc, b));
  });
}
export const mod = remainder;

/** `jnp.power`: a JS integer exponent uses `integer_pow` (JS cannot tell `2` from `2.0`). */
export function power(x: ArrayLike, y: ArrayLike): Tracer {
  const op = "power";
  if (typeof y === "number" && Number.isSafeInteger(y)) {
    const { ins } = promote(op, [x], "numeric");
    return lax.integerPow(L(ins[0]!), y);
  }
  if (typeof y === "bigint") return power(x, Number(y));
  if (isLitOperand(y) && (kindOf(y.literal.dtype) === "i" || kindOf(y.literal.dtype) === "u")) return power(x, Number(y.literal.lit));
  checkArrayLike(op, [x, y]);
  const is64 = x64(op);
  const tx = typedOf(x, is64);
  const ty = typedOf(y, is64);
  const num = promote(op, [x, y], "numeric");
  const [a, b] = broadcastIns(op, num.ins) as [In, In];
  if (kindOf(num.dtype) === "i" || kindOf(num.dtype) === "u") return powIntInt(a, b);
  if ((kindOf(tx.dtype) === "f" || kindOf(tx.dtype) === "c") && (kindOf(ty.dtype) === "i" || kindOf(ty.dtype) === "u") && !isJsScalar(y) && !isLitOperand(x) && !isJsScalar(x)) {
    const xa = asTracer(op, x as Tracer | Concrete);
    const ya = asTracer(op, y as Tracer | Concrete);
    const [p, q] = broadcastIns(op, [xa, ya]) as [In, In];
    return lax.pow(L(p), L(q));
  }
  return lax.pow(L(a), L(b));
}
export const pow = power;

function powIntInt(x0: In, y0: In): Tracer {
  const d = avalOf(y0).dtype;
  const zero = lit(0, d);
  const one = lit(1, d);
  let x: lax.LaxArg = L(x0);
  let y: lax.LaxArg = L(y0);
  let acc: Tracer = where(lax.bitwiseAnd(lax.eq(x, zero), lax.ne(y, zero)), zero, one);
  for (let i = 0; i < 6; i++) {
    acc = where(lax.bitwiseAnd(y, one), lax.mul(acc, x), acc);
    x = lax.mul(x, x);
    y = lax.shiftRightLogical(y, one);
  }
  return acc;
}

export const negative = unaryPlain("negative", (x) => lax.neg(x));
export const sign = unaryPlain("sign", (x) => lax.sign(x));
export function positive(x: ArrayLike): Tracer {
  return asarray(x);
}
export function abs(x: ArrayLike): Tracer {
  const { ins } = promote("absolute", [x]);
  const d = avalOf(ins[0]!).dtype;
  if (kindOf(d) === "u" || d === "bool") return asarray(ins[0]!);
  return lax.abs(L(ins[0]!));
}
export const absolute = abs;
export const exp = unaryInexact("exp", (x) => lax.exp(x));
export const exp2 = unaryInexact("exp2", (x) => lax.exp2(x));
export const expm1 = unaryInexact("expm1", (x) => lax.expm1(x));
export const log = unaryInexact("log", (x) => lax.log(x));
export const log1p = unaryInexact("log1p", (x) => lax.log1p(x));
export function log2(x: ArrayLike): Tracer {
  return elementwise("log2", [x], "inexact", (a) => lax.div(lax.log(L(a)), lit(Math.LN2, avalOf(a).dtype)));
}
export function log10(x: ArrayLike): Tracer {
  return elementwise("log10", [x], "inexact", (a) => lax.mul(lax.log(L(a)), lit(1 / Math.LN10, avalOf(a).dtype)));
}
export const sqrt = unaryInexact("sqrt", (x) => lax.sqrt(x));

/**
 * `jnp.logaddexp`: `log(exp(x1) + exp(x2))` without overflow, as
 * lax_other.logaddexp computes it, with its custom JVP (so derivatives are
 * JAX's, infinities included).
 */
export function logaddexp(x: ArrayLike, y: ArrayLike): Tracer {
  return elementwise("logaddexp", [x, y], "inexact", (a, b) => {
    if (kindOf(avalOf(a).dtype) !== "f") throw traceError("logaddexp", `needs real floating inputs, got ${avalOf(a).dtype}`);
    return logaddexpCustom(a, b);
  });
}

const LOGADDEXP = {};

function logaddexpCustom(a: In, b: In): Tracer {
  return customJvpFlat(
    ([p, q]) => [logaddexpImpl(p!, q!)],
    ([p, q], [tp, tq]) => {
      const out = logaddexpCustom(p!, q!);
      // lax_other._logaddexp_jvp: t1 * exp(x1 - out) + t2 * exp(x2 - out), infinities replaced by zeros.
      const term = (x: Tracer, t: Tracer | null): Tracer => lax.mul(t ?? zerosLike(x), lax.exp(lax.sub(replaceInf(x), replaceInf(out))));
      return [[out], [lax.add(term(p!, tp!), term(q!, tq!))]];
    },
    [a as Tracer, b as Tracer],
    { op: "logaddexp", key: LOGADDEXP },
  )[0]!;
}

function logaddexpImpl(a: Tracer, b: Tracer): Tracer {
  const amax = lax.max(a, b);
  const delta = lax.sub(a, b);
  return lax.selectN(lax.ne(delta, delta), lax.add(amax, lax.log1p(lax.exp(lax.neg(lax.abs(delta))))), lax.add(a, b));
}

/** lax_other._replace_inf: +inf becomes 0. */
function replaceInf(x: Tracer): Tracer {
  return lax.selectN(lax.eq(x, lit(Infinity, x.dtype)), x, lax.broadcastInDim(lit(0, x.dtype), x.shape, []));
}

/** `jax.nn.logsumexp` / `jax.scipy.special.logsumexp(x, axis, keepdims)`. */
export function logsumexp(x: ArrayLike, opts: AxisArg = {}): Tracer {
  const op = "logsumexp";
  const { ins } = promote(op, [x], "inexact");
  const a = ins[0] instanceof Tracer ? ins[0] : lax.broadcastInDim(ins[0]!, [], []);
  const dims = normAxes(op, opts.axis, a.ndim);
  let amax = maxInitial(a, { axis: dims, keepdims: opts.keepdims ?? false }, -Infinity);
  amax = lax.stopGradient(lax.selectN(lax.isFinite(amax), fullLike(amax, 0), amax));
  const amaxDims = opts.keepdims ? amax : lax.expandDims(amax, dims);
  // lax broadcasts the size-1 axes (as jax.scipy.special.logsumexp relies on); for real inputs |sumexp| as JAX takes it.
  const expA = lax.exp(lax.sub(a, amaxDims));
  let sumexp = sum(expA, { axis: dims, keepdims: opts.keepdims ?? false });
  if (kindOf(sumexp.dtype) !== "c") sumexp = lax.abs(sumexp);
  return lax.add(lax.log(sumexp), amax);
}
export const rsqrt = unaryInexact("rsqrt", (x) => lax.rsqrt(x));
export const cbrt = unaryInexact("cbrt", (x) => lax.cbrt(x));
export function square(x: ArrayLike): Tracer {
  return elementwise("square", [x], "numeric", (a) => lax.square(L(a)));
}
export function reciprocal(x: ArrayLike): Tracer {
  return elementwise("reciprocal", [x], "inexact", (a) => lax.integerPow(L(a), -1));
}
export const sin = unaryInexact("sin", (x) => lax.sin(x));
export const cos = unaryInexact("cos", (x) => lax.cos(x));
export const tan = unaryInexact("tan", (x) => lax.tan(x));
export const arcsin = unaryInexact("arcsin", (x) => lax.asin(x));
export const arccos = unaryInexact("arccos", (x) => lax.acos(x));
export const arctan = unaryInexact("arctan", (x) => lax.atan(x));
export const sinh = unaryInexact("sinh", (x) => lax.sinh(x));
export const cosh = unaryInexact("cosh", (x) => lax.cosh(x));
export const tanh = unaryInexact("tanh", (x) => lax.tanh(x));
export const arcsinh = unaryInexact("arcsinh", (x) => lax.asinh(x));
export const arccosh = unaryInexact("arccosh", (x) => lax.acosh(x));
export const arctanh = unaryInexact("arctanh", (x) => lax.atanh(x));
export const arctan2 = binaryInexact("arctan2", (x, y) => lax.atan2(x, y));
export const maximum = binaryPlain("maximum", (x, y) => lax.max(x, y));
export const minimum = binaryPlain("minimum", (x, y) => lax.min(x, y));

function integralOrBool(op: string, x: ArrayLike): Tracer | null {
  const t = typedOf(x, x64(op));
  return kindOf(t.dtype) === "i" || kindOf(t.dtype) === "u" || t.dtype === "bool" ? asarray(x) : null;
}
export function floor(x: ArrayLike): Tracer {
  return integralOrBool("floor", x) ?? unaryInexact("floor", (x) => lax.floor(x))(x);
}
export function ceil(x: ArrayLike): Tracer {
  return integralOrBool("ceil", x) ?? unaryInexact("ceil", (x) => lax.ceil(x))(x);
}
/** `jnp.round` (decimals 0): half to even. */
export function round(x: ArrayLike): Tracer {
  return integralOrBool("round", x) ?? elementwise("round", [x], "inexact", (a) => lax.round(L(a), 1));
}
export function trunc(x: ArrayLike): Tracer {
  const i = integralOrBool("trunc", x);
  if (i) return i;
  const t = asarray(x);
  return where(lax.lt(t, lit(0, t.dtype)), lax.ceil(t), lax.floor(t));
}

export function isnan(x: ArrayLike): Tracer {
  const t = asarray(x);
  if (kindOf(t.dtype) !== "f" && kindOf(t.dtype) !== "c") return full(t.shape, false);
  return lax.ne(t, t);
}
export function isinf(x: ArrayLike): Tracer {
  const t = asarray(x);
  if (kindOf(t.dtype) !== "f") return full(t.shape, false);
  return lax.eq(lax.abs(t), lit(Infinity, t.dtype));
}
export function isfinite(x: ArrayLike): Tracer {
  const t = asarray(x);
  if (kindOf(t.dtype) !== "f") return full(t.shape, true);
  return lax.isFinite(t);
}

// --- comparisons and logic ----------------------------------------------------------------

export const equal = binaryPlain("equal", (x, y) => lax.eq(x, y));
export const notEqual = binaryPlain("not_equal", (x, y) => lax.ne(x, y));
export const less = binaryPlain("less", (x, y) => lax.lt(x, y));
export const lessEqual = binaryPlain("less_equal", (x, y) => lax.le(x, y));
export const greater = binaryPlain("greater", (x, y) => lax.gt(x, y));
export const greaterEqual = binaryPlain("greater_equal", (x, y) => lax.ge(x, y));
export const bitwiseAnd = binaryPlain("bitwise_and", (x, y) => lax.bitwiseAnd(x, y));
export const bitwiseOr = binaryPlain("bitwise_or", (x, y) => lax.bitwiseOr(x, y));
export const bitwiseXor = binaryPlain("bitwise_xor", (x, y) => lax.bitwiseXor(x, y));
export const bitwiseNot = unaryPlain("bitwise_not", (x) => lax.bitwiseNot(x));
export const invert = bitwiseNot;
export const leftShift = binaryPlain("left_shift", (x, y) => lax.shiftLeft(x, y));

function toBool(x: In): lax.LaxArg {
  const d = avalOf(x).dtype;
  return d === "bool" ? L(x) : lax.ne(L(x), lit(0, d));
}
export function logicalAnd(x: ArrayLike, y: ArrayLike): Tracer {
  return elementwise("logical_and", [x, y], "plain", (a, b) => lax.bitwiseAnd(toBool(a), toBool(b)));
}
export function logicalOr(x: ArrayLike, y: ArrayLike): Tracer {
  return elementwise("logical_or", [x, y], "plain", (a, b) => lax.bitwiseOr(toBool(a), toBool(b)));
}
export function logicalXor(x: ArrayLike, y: ArrayLike): Tracer {
  return elementwise("logical_xor", [x, y], "plain", (a, b) => lax.bitwiseXor(toBool(a), toBool(b)));
}
export function logicalNot(x: ArrayLike): Tracer {
  return elementwise("logical_not", [x], "plain", (a) => lax.bitwiseNot(toBool(a)));
}

/** `jnp.where(cond, x, y)`: x and y promoted together, all three broadcast. */
export function where(condition: AnyArg, x: AnyArg, y: AnyArg): Tracer {
  const op = "where";
  checkArrayLike(op, [condition, x, y]);
  let c = asarray(condition);
  if (c.dtype !== "bool") c = lax.ne(c, lit(0, c.dtype));
  const { ins } = promote(op, [x, y]);
  const [cc, a, b] = broadcastIns(op, [c, ...ins], true) as [In, In, In];
  return lax.selectN(L(cc), L(b), L(a));
}

/** `jnp.clip(x, min, max)`: `min(max_, max(min_, x))`. */
export function clip(x: ArrayLike, min?: ArrayLike | null, max?: ArrayLike | null): Tracer {
  let out = asarray(x);
  if (min !== undefined && min !== null) out = maximum(min, out);
  if (max !== undefined && max !== null) out = minimum(max, out);
  return out;
}

// --- dtype ---------------------------------------------------------------------------------------

export function astype(x: ArrayLike, dtype: DType): Tracer {
  const is64 = x64("astype");
  const d = canonicalize(lax.checkDType("astype", dtype), is64);
  if (isJsScalar(x) || isLitOperand(x)) return asarray(x, d);
  const t = asTracer("astype", x as Tracer | Concrete);
  if (kindOf(t.dtype) === "c" && kindOf(d) !== "c") throw traceError("astype", `casting ${t.dtype} to ${d} drops the imaginary part; take jnp.real first`);
  return convertTo("astype", t, d, false);
}

// --- shapes -----------------------------------------------------------------------------------------

export function reshape(x: ArrayLike, shape: Shape | number): Tracer {
  const t = asarray(x);
  const s = resolveShape("reshape", t.size, typeof shape === "number" ? [shape] : shape);
  return lax.reshape(t, s);
}
export function ravel(x: ArrayLike): Tracer {
  const t = asarray(x);
  return lax.reshape(t, [t.size]);
}
export function transpose(x: ArrayLike, axes?: readonly number[] | null): Tracer {
  const t = asarray(x);
  const perm = axes ? axes.map((a) => normAxis("transpose", a, t.ndim)) : [...Array(t.ndim).keys()].reverse();
  return lax.transpose(t, perm);
}
export function swapaxes(x: ArrayLike, a: number, b: number): Tracer {
  const t = asarray(x);
  const perm = [...Array(t.ndim).keys()];
  const i = normAxis("swapaxes", a, t.ndim);
  const j = normAxis("swapaxes", b, t.ndim);
  perm[i] = j;
  perm[j] = i;
  return lax.transpose(t, perm);
}
export function moveaxis(x: ArrayLike, source: number, destination: number): Tracer {
  const t = asarray(x);
  const s = normAxis("moveaxis", source, t.ndim);
  const d = normAxis("moveaxis", destination, t.ndim);
  const perm = [...Array(t.ndim).keys()].filter((i) => i !== s);
  perm.splice(d, 0, s);
  return lax.transpose(t, perm);
}
export function expandDims(x: ArrayLike, axis: number | readonly number[]): Tracer {
  const t = asarray(x);
  return lax.expandDims(t, typeof axis === "number" ? [axis] : axis);
}
export function squeeze(x: ArrayLike, axis?: number | readonly number[] | null): Tracer {
  const t = asarray(x);
  const axes = axis === undefined || axis === null ? t.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0) : normAxes("squeeze", axis, t.ndim);
  return lax.squeeze(t, axes);
}
export function broadcastTo(x: ArrayLike, shape: Shape): Tracer {
  const t = asarray(x);
  const s = [...shape];
  const b = broadcastShapes("broadcast_to", [t.shape, s]);
  if (!sameShape(b, s)) throw traceError("broadcast_to", `cannot broadcast ${showAval(t.aval)} to shape ${showShape(s)}`);
  return sameShape(t.shape, s) ? t : broadcastTo1(t, s);
}
export function broadcastArrays(...xs: ArrayLike[]): Tracer[] {
  const ts = xs.map((x) => asarray(x));
  const shape = broadcastShapes("broadcast_arrays", ts.map((t) => t.shape));
  return ts.map((t) => broadcastTo(t, shape));
}

/** `jnp.concatenate(arrays, axis=0)`: operands promoted to one dtype. */
export function concatenate(xs: readonly ArrayLike[], axis: number | null = 0): Tracer {
  if (xs.length === 0) throw traceError("concatenate", "needs at least one array");
  const { ins } = promote("concatenate", xs);
  let ts = ins.map((x) => (isLitOperand(x) ? lax.broadcastInDim(L(x), [], []) : (x as Tracer)));
  if (axis === null) {
    ts = ts.map((t) => lax.reshape(t, [t.size]));
    axis = 0;
  }
  return lax.concatenate(ts, axis);
}
export function stack(xs: readonly ArrayLike[], axis = 0): Tracer {
  if (xs.length === 0) throw traceError("stack", "needs at least one array");
  const ts = xs.map((x) => asarray(x));
  const s0 = ts[0]!.shape;
  for (const t of ts) if (!sameShape(t.shape, s0)) throw traceError("stack", `all arrays must have the same shape, got ${ts.map((q) => showAval(q.aval)).join(", ")}`);
  const ax = normAxis("stack", axis, s0.length + 1);
  return concatenate(
    ts.map((t) => lax.expandDims(t, [ax])),
    ax,
  );
}
/** `jnp.unstack(x, axis)`: the slices along an axis, as a JS array. */
export function unstack(x: ArrayLike, axis = 0): Tracer[] {
  const t = asarray(x);
  const ax = normAxis("unstack", axis, t.ndim);
  const out: Tracer[] = [];
  for (let i = 0; i < t.shape[ax]!; i++) {
    const start = t.shape.map((_, k) => (k === ax ? i : 0));
    const limit = t.shape.map((n, k) => (k === ax ? i + 1 : n));
    out.push(lax.squeeze(lax.slice(t, start, limit), [ax]));
  }
  return out;
}
export function flip(x: ArrayLike, axis?: number | readonly number[] | null): Tracer {
  const t = asarray(x);
  return lax.rev(t, normAxes("flip", axis, t.ndim));
}

// --- reductions --------------------------------------------------------------------------------------

function upcastF16(d: DType): DType {
  return d === "float16" || d === "bfloat16" ? "float32" : d;
}
function promoteInteger(d: DType, is64: boolean): DType {
  if (d === "bool") return defaultInt(is64);
  const bits: Partial<Record<DType, number>> = { int8: 8, int16: 16, int32: 32, int64: 64, uint8: 8, uint16: 16, uint32: 32, uint64: 64 };
  const b = bits[d];
  if (b === undefined) return d;
  if (kindOf(d) === "u") return b < (is64 ? 64 : 32) ? defaultUint(is64) : d;
  return b < (is64 ? 64 : 32) ? defaultInt(is64) : d;
}

interface ReductionSpec {
  name: string;
  prim: (x: Tracer, axes: readonly number[]) => Tracer;
  boolPrim?: (x: Tracer, axes: readonly number[]) => Tracer;
  upcast: boolean;
  promoteIntegers: boolean;
  castToNumeric?: boolean;
  castToBool?: boolean;
  hasIdentity: boolean;
}

function reduction(spec: ReductionSpec, x: ArrayLike, opts: AxisArg = {}): Tracer {
  const op = spec.name;
  const is64 = x64(op);
  let a = asarray(x);
  if (spec.castToNumeric && a.dtype === "bool") a = lax.convertElementType(a, "int32");
  if (spec.castToBool && a.dtype !== "bool") a = lax.ne(a, lit(0, a.dtype));
  const axes = normAxes(op, opts.axis, a.ndim);
  if (!spec.hasIdentity) for (const ax of axes) if (a.shape[ax] === 0) throw traceError(op, `zero-size array to reduction operation ${op} which has no identity (${showAval(a.aval)}, axis ${ax})`);
  let resultDType: DType;
  if (opts.dtype === undefined) resultDType = spec.promoteIntegers ? promoteInteger(a.dtype, is64) : a.dtype;
  else resultDType = canonicalize(opts.dtype, is64);
  const comp = spec.upcast && opts.dtype === undefined && (kindOf(resultDType) === "f" || kindOf(resultDType) === "c") ? upcastF16(resultDType) : resultDType;
  a = convertTo(op, a, comp, false);
  const f = comp === "bool" && spec.boolPrim ? spec.boolPrim : spec.prim;
  let r = f(a, axes);
  if (opts.keepdims) r = lax.expandDims(r, axes);
  return convertTo(op, r, resultDType, false);
}

export function sum(x: ArrayLike, opts?: AxisArg): Tracer {
  return reduction({ name: "sum", prim: lax.reduceSum, boolPrim: lax.reduceOr, upcast: true, promoteIntegers: true, castToNumeric: true, hasIdentity: true }, x, opts);
}
export function prod(x: ArrayLike, opts?: AxisArg): Tracer {
  return reduction({ name: "prod", prim: lax.reduceProd, boolPrim: lax.reduceAnd, upcast: true, promoteIntegers: true, castToNumeric: true, hasIdentity: true }, x, opts);
}
export function max(x: ArrayLike, opts?: AxisArg): Tracer {
  return reduction({ name: "max", prim: lax.reduceMax, boolPrim: lax.reduceOr, upcast: false, promoteIntegers: false, hasIdentity: false }, x, opts);
}
/** `jnp.max(x, axis, initial=v, keepdims)`: the reduction, then `max(initial, r)`, then keepdims (jnp's order). */
export function maxInitial(x: ArrayLike, opts: AxisArg, initial: number): Tracer {
  const a = asarray(x);
  let r = max(a, { axis: opts.axis ?? null });
  r = lax.max(lit(initial, r.dtype), r);
  if (opts.keepdims) r = lax.expandDims(r, normAxes("max", opts.axis, a.ndim));
  return r;
}
export function min(x: ArrayLike, opts?: AxisArg): Tracer {
  return reduction({ name: "min", prim: lax.reduceMin, boolPrim: lax.reduceAnd, upcast: false, promoteIntegers: false, hasIdentity: false }, x, opts);
}
export function all(x: ArrayLike, opts?: AxisArg): Tracer {
  return reduction({ name: "all", prim: lax.reduceAnd, upcast: false, promoteIntegers: false, castToBool: true, hasIdentity: true }, x, opts);
}
export function any(x: ArrayLike, opts?: AxisArg): Tracer {
  return reduction({ name: "any", prim: lax.reduceOr, upcast: false, promoteIntegers: false, castToBool: true, hasIdentity: true }, x, opts);
}

/** `jnp.mean`: sum in the (f16-upcast) inexact dtype, divided by the count. */
export function mean(x: ArrayLike, opts: AxisArg = {}): Tracer {
  const op = "mean";
  const is64 = x64(op);
  const a = asarray(x);
  const resultDType = opts.dtype ? canonicalize(opts.dtype, is64) : toInexact(a.dtype, is64);
  const comp = kindOf(resultDType) === "f" || kindOf(resultDType) === "c" ? upcastF16(resultDType) : resultDType;
  const axes = normAxes(op, opts.axis, a.ndim);
  const count = shapeProd(axes.map((i) => a.shape[i]!));
  const s = sum(a, { axis: opts.axis ?? null, dtype: comp, keepdims: opts.keepdims ?? false });
  return convertTo(op, lax.div(s, lit(count, comp)), resultDType, false);
}

/** `jnp.var(x, {axis, ddof, keepdims})`. */
export function variance(x: ArrayLike, opts: AxisArg & { ddof?: number } = {}): Tracer {
  const op = "var";
  const is64 = x64(op);
  const a = asarray(x);
  const comp = upcastF16(toInexact(a.dtype, is64));
  const resultDType = toInexact(a.dtype, is64);
  const axes = normAxes(op, opts.axis, a.ndim);
  const ac = convertTo(op, a, comp, false);
  const m = mean(ac, { axis: opts.axis ?? null, dtype: comp, keepdims: true });
  const centered = lax.sub(ac, m);
  const sq = kindOf(comp) === "c" ? lax.real(lax.mul(centered, lax.conj(centered))) : lax.square(centered);
  const n = shapeProd(axes.map((i) => a.shape[i]!));
  const normalizer = n - (opts.ddof ?? 0);
  const s = sum(sq, { axis: opts.axis ?? null, dtype: sq.dtype, keepdims: opts.keepdims ?? false });
  const out = lax.div(s, lit(normalizer, sq.dtype));
  return convertTo(op, out, resultDType, false);
}
export { variance as var_ };
export function std(x: ArrayLike, opts: AxisArg & { ddof?: number } = {}): Tracer {
  return lax.sqrt(variance(x, opts));
}

function argReduce(name: "argmax" | "argmin", x: ArrayLike, opts: { axis?: number | null; keepdims?: boolean } = {}): Tracer {
  const is64 = x64(name);
  let a = asarray(x);
  let axis = opts.axis;
  if (axis === undefined || axis === null) {
    a = lax.reshape(a, [a.size]);
    axis = 0;
  }
  const ax = normAxis(name, axis, a.ndim);
  const f = name === "argmax" ? lax.argmax : lax.argmin;
  let r = f(a, ax, defaultInt(is64));
  if (opts.keepdims) {
    if (opts.axis === undefined || opts.axis === null) r = lax.reshape(r, asarray(x).shape.map(() => 1));
    else r = lax.expandDims(r, [ax]);
  }
  return r;
}
export const argmax = (x: ArrayLike, opts?: { axis?: number | null; keepdims?: boolean }): Tracer => argReduce("argmax", x, opts);
export const argmin = (x: ArrayLike, opts?: { axis?: number | null; keepdims?: boolean }): Tracer => argReduce("argmin", x, opts);

function cumulative(name: string, prim: (x: Tracer, axis: number, reverse?: boolean) => Tracer, promoteIntegers: boolean, x: ArrayLike, opts: { axis?: number | null; dtype?: DType } = {}): Tracer {
  const is64 = x64(name);
  let a = asarray(x);
  let axis = opts.axis;
  if (axis === undefined || axis === null || a.ndim === 0) {
    a = lax.reshape(a, [a.size]);
    if (axis === undefined || axis === null) axis = 0;
  }
  const ax = normAxis(name, axis, a.ndim);
  let resultT: DType;
  if (opts.dtype === undefined) resultT = promoteIntegers || a.dtype === "bool" ? promoteInteger(a.dtype, is64) : a.dtype;
  else resultT = canonicalize(opts.dtype, is64);
  a = convertTo(name, a, resultT, false);
  return convertTo(name, prim(a, ax), resultT, false);
}
export const cumsum = (x: ArrayLike, opts?: { axis?: number | null; dtype?: DType }): Tracer => cumulative("cumsum", lax.cumsum, false, x, opts);
export const cumprod = (x: ArrayLike, opts?: { axis?: number | null; dtype?: DType }): Tracer => cumulative("cumprod", lax.cumprod, false, x, opts);

// --- linear algebra ------------------------------------------------------------------------------------

function dotType(op: string, a: ArrayLike, b: ArrayLike): { pet: DType; weak: boolean; ta: Tracer; tb: Tracer } {
  const is64 = x64(op);
  checkArrayLike(op, [a, b]);
  const r = resultType([typedOf(a, is64), typedOf(b, is64)], is64);
  return { pet: r.dtype, weak: r.weak, ta: asarray(a), tb: asarray(b) };
}

/** `jnp.matmul` (`@`): batch axes broadcast, 1-d operands promoted and squeezed as NumPy does. */
export function matmul(a0: ArrayLike, b0: ArrayLike): Tracer {
  const op = "matmul";
  const { pet, weak, ta: a, tb: b } = dotType(op, a0, b0);
  for (const [i, t] of [a, b].entries()) if (t.ndim < 1) throw traceError(op, `operand ${i} must have at least one axis, got ${showAval(t.aval)}`);
  const aMat = a.ndim > 1;
  const bMat = b.ndim > 1;
  const aB: (number | null)[] = aMat ? [...a.shape.slice(0, -2)] : [];
  const bB: (number | null)[] = bMat ? [...b.shape.slice(0, -2)] : [];
  const nb = Math.max(aB.length, bB.length);
  while (aB.length < nb) aB.unshift(null);
  while (bB.length < nb) bB.unshift(null);
  const aSq: number[] = [];
  const bSq: number[] = [];
  const both: number[] = [];
  const aBatch: number[] = [];
  const bBatch: number[] = [];
  const idxBatch: number[] = [];
  const idxA: number[] = [];
  const idxB: number[] = [];
  for (let i = 0; i < nb; i++) {
    const ba = aB[i]!;
    const bb = bB[i]!;
    if (ba === null) idxB.push(i);
    else if (bb === null) idxA.push(i);
    else if (ba === 1 && bb === 1) {
      aSq.push(idxBatch.length + idxA.length + aSq.length);
      bSq.push(idxBatch.length + idxB.length + bSq.length);
      both.push(i);
    } else if (ba === 1) {
      idxB.push(i);
      aSq.push(idxBatch.length + idxA.length + aSq.length);
    } else if (bb === 1) {
      idxA.push(i);
      bSq.push(idxBatch.length + idxB.length + bSq.length);
    } else if (ba === bb) {
      aBatch.push(idxBatch.length + idxA.length);
      bBatch.push(idxBatch.length + idxB.length);
      idxBatch.push(i);
    } else {
      throw traceError(op, `incompatible shapes ${showAval(a.aval)} and ${showAval(b.aval)}: batch axis ${i} has sizes ${ba} and ${bb}`);
    }
  }
  if (aMat) idxA.push(nb);
  if (bMat) idxB.push(nb + (aMat ? 1 : 0));
  const order = [...idxBatch, ...idxA, ...idxB];
  const perm = order.map((_, i) => i).sort((p, q) => order[p]! - order[q]!);
  const as = lax.squeeze(a, aSq);
  const bs = lax.squeeze(b, bSq);
  const ka = as.shape[as.ndim - 1]!;
  const kb = bs.shape[bs.ndim - 1 - (bMat ? 1 : 0)]!;
  if (ka !== kb) throw traceError(op, `contracting axes differ: ${showAval(a.aval)} @ ${showAval(b.aval)} (${ka} vs ${kb})`);
  const out = dotGeneralMixed(as, bs, [[[as.ndim - 1], [bs.ndim - 1 - (bMat ? 1 : 0)]], [aBatch, bBatch]], pet);
  let result = lax.transpose(out, perm);
  if (both.length) result = lax.expandDims(result, both);
  return convertTo(op, result, pet, weak);
}

/** dot_general that, like lax's, takes operands of different dtypes when a preferred element type is given. */
function dotGeneralMixed(a: Tracer, b: Tracer, dn: lax.DotDimensionNumbers, pet: DType): Tracer {
  if (a.dtype === b.dtype) return lax.dotGeneral(a, b, dn, pet);
  // Record the mixed-dtype dot as JAX does (XLA converts inside the dot).
  return mixedDot(a, b, dn, pet);
}

function mixedDot(a: Tracer, b: Tracer, dn: lax.DotDimensionNumbers, pet: DType): Tracer {
  const [[lc, rc], [lb, rb]] = dn;
  for (let i = 0; i < lc.length; i++) if (a.shape[lc[i]!] !== b.shape[rc[i]!]) throw traceError("dot_general", `contracting axes of ${showAval(a.aval)} and ${showAval(b.aval)} differ`);
  const lfree = a.shape.map((_, i) => i).filter((i) => !lc.includes(i) && !lb.includes(i));
  const rfree = b.shape.map((_, i) => i).filter((i) => !rc.includes(i) && !rb.includes(i));
  const shape = [...lb.map((d) => a.shape[d]!), ...lfree.map((d) => a.shape[d]!), ...rfree.map((d) => b.shape[d]!)];
  return lax.rawBind("dot_general", [a, b], { dimension_numbers: [[[...lc], [...rc]], [[...lb], [...rb]]], precision: null, preferred_element_type: pet }, [{ aval: { dtype: pet, shape } }])[0]!;
}

/** `jnp.dot`. */
export function dot(a0: ArrayLike, b0: ArrayLike): Tracer {
  const op = "dot";
  const { pet, weak, ta: a, tb: b } = dotType(op, a0, b0);
  let contract: [number[], number[]];
  if (a.ndim === 0 || b.ndim === 0) contract = [[], []];
  else if (b.ndim === 1) contract = [[a.ndim - 1], [0]];
  else contract = [[a.ndim - 1], [b.ndim - 2]];
  if (contract[0].length && a.shape[contract[0][0]!] !== b.shape[contract[1][0]!]) {
    throw traceError(op, `shapes ${showAval(a.aval)} and ${showAval(b.aval)} are not aligned: ${a.shape[contract[0][0]!]} (axis ${contract[0][0]}) != ${b.shape[contract[1][0]!]} (axis ${contract[1][0]})`);
  }
  const out = dotGeneralMixed(a, b, [contract, [[], []]], pet);
  return convertTo(op, out, pet, weak);
}

export function outer(a: ArrayLike, b: ArrayLike): Tracer {
  const ra = ravel(a);
  const rb = ravel(b);
  return multiply(lax.expandDims(ra, [1]), lax.expandDims(rb, [0]));
}

/**
 * `jnp.einsum` for one or two operands (`"ij,jk->ik"`, `"bij,bjk->bik"`,
 * `"ii->i"` is not supported). Axes only in one operand and not in the
 * output are summed first; the contraction is one `dot_general`.
 */
export function einsum(subscripts: string, ...operands: ArrayLike[]): Tracer {
  const op = "einsum";
  const spec = subscripts.replace(/\s+/g, "");
  const [lhs, rhsExplicit] = spec.includes("->") ? (spec.split("->") as [string, string]) : [spec, undefined];
  const inSpecs = lhs.split(",");
  if (inSpecs.length !== operands.length) throw traceError(op, `subscripts name ${inSpecs.length} operands, got ${operands.length}`);
  if (operands.length < 1 || operands.length > 2) throw traceError(op, "only one or two operands are supported");
  for (const s of inSpecs) if (!/^[a-zA-Z]*$/.test(s) || new Set(s).size !== s.length) throw traceError(op, `subscripts ${JSON.stringify(s)}: letters only, each at most once per operand (no ellipsis, no traces)`);
  const counts = new Map<string, number>();
  for (const s of inSpecs) for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  const out = rhsExplicit ?? [...counts.keys()].filter((c) => counts.get(c) === 1).sort().join("");
  const { pet, weak } = operands.length === 2 ? dotType(op, operands[0]!, operands[1]!) : { pet: typedOf(operands[0]!, x64(op)).dtype, weak: typedOf(operands[0]!, x64(op)).weak };
  const ts = operands.map((o, i) => {
    const t = asarray(o);
    if (t.ndim !== inSpecs[i]!.length) throw traceError(op, `operand ${i} ${showAval(t.aval)} has ${t.ndim} axes but subscripts ${JSON.stringify(inSpecs[i])}`);
    return t;
  });
  // Sizes agree.
  const size = new Map<string, number>();
  ts.forEach((t, i) => [...inSpecs[i]!].forEach((c, k) => {
    const n = t.shape[k]!;
    if (size.has(c) && size.get(c) !== n) throw traceError(op, `axis ${c} has sizes ${size.get(c)} and ${n}`);
    size.set(c, n);
  }));
  // Sum axes that appear in one operand only and not in the output.
  const specs = [...inSpecs];
  const reduced = ts.map((t, i) => {
    const s = specs[i]!;
    const other = specs[1 - i] ?? "";
    const drop = [...s].map((c, k) => (!out.includes(c) && !other.includes(c) ? k : -1)).filter((k) => k >= 0);
    if (drop.length === 0) return t;
    specs[i] = [...s].filter((_, k) => !drop.includes(k)).join("");
    return sum(t, { axis: drop });
  });
  let result: Tracer;
  let resSpec: string;
  if (reduced.length === 1) {
    result = reduced[0]!;
    resSpec = specs[0]!;
  } else {
    const [a, b] = reduced as [Tracer, Tracer];
    const [sa, sb] = specs as [string, string];
    const batch = [...sa].filter((c) => sb.includes(c) && out.includes(c));
    const contract = [...sa].filter((c) => sb.includes(c) && !out.includes(c));
    const dn: lax.DotDimensionNumbers = [
      [contract.map((c) => sa.indexOf(c)), contract.map((c) => sb.indexOf(c))],
      [batch.map((c) => sa.indexOf(c)), batch.map((c) => sb.indexOf(c))],
    ];
    result = dotGeneralMixed(a, b, dn, pet);
    resSpec = [...batch, ...[...sa].filter((c) => !batch.includes(c) && !contract.includes(c)), ...[...sb].filter((c) => !batch.includes(c) && !contract.includes(c))].join("");
  }
  for (const c of out) if (!resSpec.includes(c)) throw traceError(op, `output axis ${c} is not in any operand`);
  if (resSpec.length !== out.length) throw traceError(op, `axes ${[...resSpec].filter((c) => !out.includes(c)).join("")} would need summing after the contraction; list them in the output or sum first`);
  result = lax.transpose(result, [...out].map((c) => resSpec.indexOf(c)));
  return convertTo(op, result, pet, weak);
}

// --- indexing ------------------------------------------------------------------------------------------------

/** A slice, as Python's `start:stop:step` (nulls are defaults). */
export interface Slice {
  readonly kind: "slice";
  readonly start: number | null;
  readonly stop: number | null;
  readonly step: number | null;
}
export function slice(start: number | null = null, stop: number | null = null, step: number | null = null): Slice {
  return { kind: "slice", start, stop, step };
}
/** `jnp.newaxis` (null works too). */
export const newaxis = null;
/** `...` */
export const ellipsis = "...";

/**
 * One index: an int, a slice, `null` (newaxis), `"..."`, an integer array
 * (Tracer, DeviceArray, NDArray or nested JS list), or a string in NumPy
 * syntax for several at once (`"1:, ::2, None, ..."`).
 */
export type Index = number | Slice | null | string | Tracer | Concrete | readonly unknown[];

function parseIndexString(s: string): (number | Slice | null | "...")[] {
  return s.split(",").map((part) => {
    const p = part.trim();
    if (p === "...") return "...";
    if (p === "None" || p === "newaxis") return null;
    if (p.includes(":")) {
      const bits = p.split(":").map((b) => b.trim());
      if (bits.length > 3) throw traceError("index", `bad slice ${JSON.stringify(p)}`);
      const num = (b: string | undefined): number | null => {
        if (b === undefined || b === "") return null;
        const n = Number(b);
        if (!Number.isInteger(n)) throw traceError("index", `bad slice bound ${JSON.stringify(b)} in ${JSON.stringify(p)}`);
        return n;
      };
      return slice(num(bits[0]), num(bits[1]), num(bits[2]));
    }
    const n = Number(p);
    if (p === "" || !Number.isInteger(n)) throw traceError("index", `bad index ${JSON.stringify(p)}: use integers, slices (1:3, ::2), None or ...`);
    return n;
  });
}

type NormIndex = { kind: "int"; i: number } | { kind: "dyn"; t: Tracer } | { kind: "slice"; start: number; step: number; len: number } | { kind: "new" } | { kind: "array"; t: Tracer };

function isSlice(x: unknown): x is Slice {
  return typeof x === "object" && x !== null && (x as Slice).kind === "slice";
}

/** Python slice.indices(n). */
function sliceIndices(s: Slice, n: number): { start: number; step: number; len: number } {
  const step = s.step ?? 1;
  if (step === 0) throw traceError("index", "slice step cannot be zero");
  let start: number;
  let stop: number;
  if (step > 0) {
    start = s.start === null ? 0 : s.start < 0 ? Math.max(0, s.start + n) : Math.min(s.start, n);
    stop = s.stop === null ? n : s.stop < 0 ? Math.max(0, s.stop + n) : Math.min(s.stop, n);
  } else {
    start = s.start === null ? n - 1 : s.start < 0 ? Math.max(-1, s.start + n) : Math.min(s.start, n - 1);
    stop = s.stop === null ? -1 : s.stop < 0 ? Math.max(-1, s.stop + n) : Math.min(s.stop, n - 1);
  }
  const len = step > 0 ? Math.max(0, Math.ceil((stop - start) / step)) : Math.max(0, Math.ceil((start - stop) / -step));
  return { start, step, len };
}

function normalizeIndex(x: Tracer, index: readonly Index[]): NormIndex[] {
  const flat: (number | Slice | null | "..." | Tracer | Concrete | readonly unknown[])[] = [];
  for (const i of index) {
    if (typeof i === "string") flat.push(...parseIndexString(i));
    else flat.push(i);
  }
  const ell = flat.filter((i) => i === "...").length;
  if (ell > 1) throw traceError("index", "an index can only have a single ellipsis ('...')");
  const consumed = flat.filter((i) => i !== null && i !== "...").length;
  if (consumed > x.ndim) throw traceError("index", `too many indices for ${showAval(x.aval)}: ${consumed} were given`);
  const out: NormIndex[] = [];
  let dim = 0;
  for (const i of flat) {
    if (i === "...") {
      for (let k = 0; k < x.ndim - consumed; k++) out.push({ kind: "slice", start: 0, step: 1, len: x.shape[dim++]! });
      continue;
    }
    if (i === null) {
      out.push({ kind: "new" });
      continue;
    }
    const n = x.shape[dim]!;
    if (typeof i === "number") {
      if (!Number.isInteger(i) || i < -n || i >= n) throw traceError("index", `index ${i} is out of bounds for axis ${dim} with size ${n}`);
      out.push({ kind: "int", i: i < 0 ? i + n : i });
    } else if (isSlice(i)) {
      out.push({ kind: "slice", ...sliceIndices(i, n) });
    } else {
      let t: Tracer;
      if (Array.isArray(i)) {
        const host = hostArray(i);
        if (host.dtype === "bool") throw traceError("index", "boolean mask indexing needs a concrete mask and gives a data-dependent shape; use jnp.where instead");
        t = asarray(host);
      } else t = asTracer("index", i as Tracer | Concrete);
      if (t.dtype === "bool") throw traceError("index", `boolean mask indexing (${showAval(t.aval)}) gives a data-dependent shape and cannot be traced; use jnp.where instead`);
      if (kindOf(t.dtype) !== "i" && kindOf(t.dtype) !== "u") throw traceError("index", `indices must be integers, got ${showAval(t.aval)}`);
      out.push(t.ndim === 0 ? { kind: "dyn", t } : { kind: "array", t });
    }
    dim++;
  }
  while (dim < x.ndim) out.push({ kind: "slice", start: 0, step: 1, len: x.shape[dim++]! });
  return out;
}

/** Negative integer indices wrap (`i < 0 ? i + n : i`), as jnp does before a gather. */
function wrapNegative(t: Tracer, n: number): Tracer {
  if (kindOf(t.dtype) === "u") return t;
  return lax.selectN(lax.lt(t, lit(0, t.dtype)), t, lax.add(t, lit(n, t.dtype)));
}

/** `x[index]` with NumPy semantics; out-of-bounds array indices are clamped, as in JAX. */
export function getItem(x0: ArrayLike, index: readonly Index[]): Tracer {
  const x = asarray(x0);
  const idx = normalizeIndex(x, index);
  if (idx.some((i) => i.kind === "array")) return gatherIndex(x, idx);
  // Basic indexing: static slices (and reversals), dynamic scalar starts, then squeeze and newaxis.
  let y = x;
  let dim = 0;
  const revDims: number[] = [];
  const starts: number[] = [];
  const limits: number[] = [];
  const strides: number[] = [];
  const dyn: (Tracer | null)[] = [];
  const squeezeDims: number[] = [];
  for (const i of idx) {
    if (i.kind === "new") continue;
    const n = x.shape[dim]!;
    if (i.kind === "int") {
      starts.push(i.i);
      limits.push(i.i + 1);
      strides.push(1);
      dyn.push(null);
      squeezeDims.push(dim);
    } else if (i.kind === "dyn") {
      starts.push(0);
      limits.push(1);
      strides.push(1);
      dyn.push(i.t);
      squeezeDims.push(dim);
    } else if (i.kind === "slice") {
      if (i.step < 0) {
        revDims.push(dim);
        const s = n - 1 - i.start;
        starts.push(s);
        limits.push(i.len === 0 ? s : s + (i.len - 1) * -i.step + 1);
        strides.push(-i.step);
      } else {
        starts.push(i.start);
        limits.push(i.len === 0 ? i.start : i.start + (i.len - 1) * i.step + 1);
        strides.push(i.step);
      }
      dyn.push(null);
    }
    dim++;
  }
  if (revDims.length) y = lax.rev(y, revDims);
  if (dyn.some((d) => d !== null)) {
    const sizes = y.shape.map((n, k) => (dyn[k] ? 1 : n));
    const st = dyn.map((d) => d ?? 0);
    y = lax.dynamicSlice(y, st.map((v) => (v instanceof Tracer ? v : v)) as lax.LaxArg[], sizes);
    const s2 = starts.map((s, k) => (dyn[k] ? 0 : s));
    const l2 = limits.map((l, k) => (dyn[k] ? 1 : l));
    y = lax.slice(y, s2, l2, strides);
  } else {
    y = lax.slice(y, starts, limits, strides);
  }
  if (squeezeDims.length) y = lax.squeeze(y, squeezeDims);
  const newDims: number[] = [];
  let outDim = 0;
  for (const i of idx) {
    if (i.kind === "new") newDims.push(outDim++);
    else if (i.kind === "slice") outDim++;
  }
  if (newDims.length) y = lax.expandDims(y, newDims);
  return y;
}

/**
 * The result shape of `x[index]` and, for each operand axis, an integer
 * array of that shape holding the operand coordinate of each result
 * element: the index "grid" a gather or a scatter uses.
 */
function indexGrid(x: Tracer, idx: readonly NormIndex[]): { shape: number[]; coords: Tracer[] } {
  const anyArray = idx.some((i) => i.kind === "array");
  // NumPy: ints next to arrays are advanced indices too.
  const advPos = idx.map((i, k) => (i.kind === "array" || (anyArray && (i.kind === "int" || i.kind === "dyn")) ? k : -1)).filter((k) => k >= 0);
  const advShape = anyArray ? broadcastShapes("index", idx.filter((i) => i.kind === "array").map((i) => (i as { t: Tracer }).t.shape)) : [];
  const adjacent = advPos.length > 0 && advPos[advPos.length - 1]! - advPos[0]! === advPos.length - 1;
  // Result axes: basic axes in order, with the advanced block in place (adjacent) or first.
  const basicAxes: { k: number; len: number }[] = [];
  idx.forEach((i, k) => {
    if (advPos.includes(k)) return;
    if (i.kind === "slice") basicAxes.push({ k, len: i.len });
    else if (i.kind === "new") basicAxes.push({ k, len: 1 });
  });
  const shape: number[] = [];
  const axisOf = new Map<number, number>();
  let advStart = 0;
  const placeAdv = (): void => {
    advStart = shape.length;
    shape.push(...advShape);
  };
  if (!adjacent && anyArray) placeAdv();
  let placed = !anyArray || !adjacent;
  for (const b of basicAxes) {
    if (!placed && b.k > advPos[0]!) {
      placeAdv();
      placed = true;
    }
    axisOf.set(b.k, shape.length);
    shape.push(b.len);
  }
  if (!placed) placeAdv();
  const itype = idx.some((i) => (i.kind === "array" || i.kind === "dyn") && i.t.dtype === "int64") ? "int64" : "int32";
  const coords: Tracer[] = [];
  let dim = 0;
  idx.forEach((i) => {
    if (i.kind === "new") return;
    const n = x.shape[dim]!;
    let c: Tracer;
    if (i.kind === "slice") {
      const ax = axisOf.get(idx.indexOf(i))!;
      let io = lax.iota(itype, shape, ax);
      if (i.step !== 1) io = lax.mul(io, lit(i.step, itype));
      if (i.start !== 0) io = lax.add(io, lit(i.start, itype));
      c = io;
    } else if (i.kind === "int") {
      c = lax.broadcastInDim(lit(i.i, itype), shape, []);
    } else {
      const t = convertTo("index", wrapNegative(i.t, n), itype, false);
      const b = broadcastTo1(t, advShape);
      c = lax.broadcastInDim(b, shape, advShape.map((_, q) => advStart + q));
    }
    coords.push(c);
    dim++;
  });
  return { shape, coords };
}

function gatherIndex(x: Tracer, idx: readonly NormIndex[]): Tracer {
  const { shape, coords } = indexGrid(x, idx);
  const indices = lax.concatenate(coords.map((c) => lax.expandDims(c, [shape.length])), shape.length);
  const all = [...Array(x.ndim).keys()];
  return lax.gather(
    x,
    indices,
    { offset_dims: [], collapsed_slice_dims: all, start_index_map: all, operand_batching_dims: [], start_indices_batching_dims: [] },
    x.shape.map(() => 1),
    { mode: "promise_in_bounds" },
  );
}

/** The object `x.at(...)` returns: functional updates at an index, as `x.at[...]` in JAX. */
export class AtIndexer {
  constructor(
    readonly x: Tracer,
    readonly index: readonly Index[],
  ) {}
  get(): Tracer {
    return getItem(this.x, this.index);
  }
  set(v: ArrayLike): Tracer {
    return this.#scatter("scatter", v);
  }
  add(v: ArrayLike): Tracer {
    return this.#scatter("scatter_add", v);
  }
  multiply(v: ArrayLike): Tracer {
    return this.#scatter("scatter_mul", v);
  }
  min(v: ArrayLike): Tracer {
    return this.#scatter("scatter_min", v);
  }
  max(v: ArrayLike): Tracer {
    return this.#scatter("scatter_max", v);
  }
  #scatter(prim: lax.ScatterPrim, v: ArrayLike): Tracer {
    const x = this.x;
    const idx = normalizeIndex(x, this.index);
    const { shape, coords } = indexGrid(x, idx);
    const basicOnly = !idx.some((i) => i.kind === "array");
    const indices = lax.concatenate(coords.map((c) => lax.expandDims(c, [shape.length])), shape.length);
    let u: Tracer;
    if (isJsScalar(v)) u = lax.broadcastInDim(lit(v, x.dtype), shape, []);
    else u = broadcastTo(convertTo(prim, v as Tracer | Concrete, x.dtype, false), shape);
    const all = [...Array(x.ndim).keys()];
    return lax.scatter(
      prim,
      x,
      indices,
      u,
      { update_window_dims: [], inserted_window_dims: all, scatter_dims_to_operand_dims: all, operand_batching_dims: [], scatter_indices_batching_dims: [] },
      { mode: "fill", indicesAreSorted: basicOnly, uniqueIndices: basicOnly },
    );
  }
}

/** `jnp.take(x, indices, axis)`: integer indices along one axis (clamped, as jnp's default mode). */
export function take(x: ArrayLike, indices: ArrayLike, axis = 0): Tracer {
  const t = asarray(x);
  const ax = normAxis("take", axis, t.ndim);
  const pre: Index[] = Array(ax).fill(slice());
  return getItem(t, [...pre, isJsScalar(indices) ? (indices as number) : (indices as Tracer)]);
}

export { NDArray };
export type { Concrete };
