/**
 * `lax`: one function per primitive of the Program IR, with `jax.lax`'s
 * strict rules (operands of one dtype; elementwise operands of one shape,
 * or rank 0), shape inference, and errors that name the op, what it got and
 * the user's line. jnp.ts builds NumPy semantics (promotion, broadcasting)
 * on top of these.
 */

import type { DType } from "../../values/dtype.js";
import { isDType } from "../../values/dtype.js";
import type { Aval, ParamValue, SubProgram } from "../ir.js";
import { showAval } from "../ir.js";
import { asTracer, avalOf, bind, bind1, type Concrete, type In, isConcrete as isConcreteArray, isLitOperand, isWeak, lit, type LitOperand, requireTrace } from "../core.js";
import { treeMap } from "../../values/tree.js";
import { Tracer } from "../tracer.js";
import { traceError } from "../errors.js";
import { bitsToFloat, canonicalize, isJsScalar, type JsScalar, kindOf, type Kind, scalarType } from "../dtypes.js";
import { checkShape, normAxis, normAxes, prod, sameShape, type Shape, showShape } from "../shapes.js";

/** What lax functions accept: a tracer, a concrete array (captured as a program input) or a JS scalar. */
export type LaxArg = Tracer | Concrete | JsScalar | LitOperand;

// --- operands -------------------------------------------------------------------

/** A literal of another dtype with the same value (as `convert_element_type` of a constant). */
export function retypeLiteral(x: LitOperand, dtype: DType, weak: boolean): LitOperand {
  const from = x.literal.dtype;
  const k = kindOf(from);
  const text = x.literal.lit;
  if (k === "b") return lit(text === "true", dtype, weak);
  if (k === "i" || k === "u") {
    const v = BigInt(text);
    return lit(kindOf(dtype) === "i" || kindOf(dtype) === "u" || kindOf(dtype) === "b" ? v : Number(v), dtype, weak);
  }
  if (k === "f") {
    const v = bitsToFloat(text, from);
    const dk = kindOf(dtype);
    if (dk === "i" || dk === "u") {
      if (!Number.isFinite(v)) throw traceError("convert_element_type", `cannot convert the literal ${v} to ${dtype} exactly`);
      return lit(Math.trunc(v), dtype, weak);
    }
    return lit(dk === "b" ? v !== 0 : v, dtype, weak);
  }
  throw traceError("convert_element_type", `cannot retype a ${from} literal to ${dtype}`);
}

const showIn = (x: In): string => showAval(avalOf(x));

/**
 * Operands for a lax op: tracers and arrays as they are, JS scalars as
 * literals of the arrays' dtype (lax lets Python scalars take their
 * partner's dtype), or of their own weak default when there is no array.
 */
function operands(op: string, xs: readonly LaxArg[]): In[] {
  const trace = requireTrace(op);
  const resolved: (In | JsScalar)[] = xs.map((x) => (isJsScalar(x) || isLitOperand(x) ? x : asTracer(op, x)));
  const typed = resolved.find((x): x is In => !isJsScalar(x));
  const dtype = typed === undefined ? undefined : avalOf(typed).dtype;
  return resolved.map((x) => {
    if (!isJsScalar(x)) return x;
    if (dtype !== undefined) return lit(x, dtype, true);
    const t = scalarType(x, trace.x64);
    return lit(x, t.dtype, t.weak);
  });
}

// --- elementwise -------------------------------------------------------------------

const NUM: Kind[] = ["i", "u", "f", "c"];
const INEXACT: Kind[] = ["f", "c"];
const FLOAT: Kind[] = ["f"];
const INT: Kind[] = ["i", "u"];
const INT_BOOL: Kind[] = ["b", "i", "u"];
const ANY: Kind[] = ["b", "i", "u", "f", "c"];
const REAL_NUM: Kind[] = ["i", "u", "f"];

const KIND_NAMES: Record<Kind, string> = { b: "bool", i: "signed integer", u: "unsigned integer", f: "floating", c: "complex" };

function checkKinds(op: string, xs: readonly In[], kinds: readonly Kind[]): void {
  for (const x of xs) {
    const d = avalOf(x).dtype;
    if (!kinds.includes(kindOf(d))) {
      throw traceError(op, `does not accept dtype ${d}; accepted dtypes are ${kinds.map((k) => KIND_NAMES[k]).join(", ")}`);
    }
  }
}

/**
 * The common shape of elementwise operands. As in lax (JAX 0.12): rank-0
 * operands broadcast, and operands of one rank broadcast their size-1 axes.
 */
function elementwiseShape(op: string, xs: readonly In[]): readonly number[] {
  let shape: number[] | null = null;
  for (const x of xs) {
    const s = avalOf(x).shape;
    if (s.length === 0) continue;
    if (shape === null) shape = [...s];
    else if (shape.length !== s.length || s.some((d, i) => d !== shape![i] && d !== 1 && shape![i] !== 1)) {
      throw traceError(op, `operands must have the same shape (or be scalars), got ${xs.map(showIn).join(" and ")}; jnp.${op} broadcasts, lax.${op} does not`);
    } else shape = shape.map((d, i) => (d === 1 ? s[i]! : d));
  }
  return shape ?? [];
}

function sameDType(op: string, xs: readonly In[]): DType {
  const d = avalOf(xs[0]!).dtype;
  for (const x of xs) {
    if (avalOf(x).dtype !== d) throw traceError(op, `operands must have the same dtype, got ${xs.map(showIn).join(" and ")}; use jnp.${op} for type promotion or astype`);
  }
  return d;
}

function naryRaw(prim: string, xs: readonly In[], kinds: readonly Kind[], params: { [k: string]: ParamValue } = {}, outDType?: (d: DType) => DType): Tracer {
  checkKinds(prim, xs, kinds);
  const d = sameDType(prim, xs);
  const shape = elementwiseShape(prim, xs);
  const weak = xs.every(isWeak);
  const od = outDType ? outDType(d) : d;
  return bind1(prim, xs, params, { dtype: od, shape, weak: od === "bool" ? false : weak });
}

function unary(prim: string, kinds: readonly Kind[], params: { [k: string]: ParamValue } = {}, outDType?: (d: DType) => DType) {
  return (x: LaxArg): Tracer => naryRaw(prim, operands(prim, [x]), kinds, params, outDType);
}
function binary(prim: string, kinds: readonly Kind[], outDType?: (d: DType) => DType) {
  return (x: LaxArg, y: LaxArg): Tracer => naryRaw(prim, operands(prim, [x, y]), kinds, {}, outDType);
}

const toBool = (): DType => "bool";
const realPart = (d: DType): DType => (d === "complex64" ? "float32" : d === "complex128" ? "float64" : d);

export const neg = unary("neg", NUM);
export const sign = unary("sign", NUM);
export const floor = unary("floor", FLOAT);
export const ceil = unary("ceil", FLOAT);
/** `lax.round`; `roundingMethod` 0 rounds half away from zero, 1 to nearest even (what `jnp.round` uses). */
export function round(x: LaxArg, roundingMethod: 0 | 1 = 0): Tracer {
  return naryRaw("round", operands("round", [x]), FLOAT, { rounding_method: roundingMethod });
}
export const isFinite = unary("is_finite", FLOAT, {}, toBool);
export const exp = unary("exp", INEXACT);
export const exp2 = unary("exp2", INEXACT);
export const log = unary("log", INEXACT);
export const log1p = unary("log1p", INEXACT);
export const expm1 = unary("expm1", INEXACT);
export const tanh = unary("tanh", INEXACT);
export const logistic = unary("logistic", INEXACT);
export const sin = unary("sin", INEXACT);
export const cos = unary("cos", INEXACT);
export const tan = unary("tan", INEXACT);
export const asin = unary("asin", INEXACT);
export const acos = unary("acos", INEXACT);
export const atan = unary("atan", INEXACT);
export const sinh = unary("sinh", INEXACT);
export const cosh = unary("cosh", INEXACT);
export const asinh = unary("asinh", INEXACT);
export const acosh = unary("acosh", INEXACT);
export const atanh = unary("atanh", INEXACT);
export const sqrt = unary("sqrt", INEXACT);
export const rsqrt = unary("rsqrt", INEXACT);
export const cbrt = unary("cbrt", FLOAT);
export const abs = unary("abs", NUM, {}, realPart);
export const bitwiseNot = unary("not", INT_BOOL);
export const erf = unary("erf", FLOAT);
export const erfc = unary("erfc", FLOAT);
export const erfInv = unary("erf_inv", FLOAT);
export const lgamma = unary("lgamma", FLOAT);
export const digamma = unary("digamma", FLOAT);
export const square = unary("square", NUM);
export const populationCount = unary("population_count", INT);
export const clz = unary("clz", INT);
export const real = unary("real", ["c"], {}, realPart);
export const imag = unary("imag", ["c"], {}, realPart);
export const conj = unary("conj", ["c"]);
export function integerPow(x: LaxArg, y: number): Tracer {
  if (!Number.isSafeInteger(y)) throw traceError("integer_pow", `exponent must be an integer, got ${y}`);
  return naryRaw("integer_pow", operands("integer_pow", [x]), NUM, { y });
}

export const add = binary("add", NUM);
export const sub = binary("sub", NUM);
export const mul = binary("mul", NUM);
export const div = binary("div", NUM);
export const rem = binary("rem", REAL_NUM);
export const max = binary("max", ANY);
export const min = binary("min", ANY);
export const atan2 = binary("atan2", FLOAT);
export const nextafter = binary("nextafter", FLOAT);
export const bitwiseAnd = binary("and", INT_BOOL);
export const bitwiseOr = binary("or", INT_BOOL);
export const bitwiseXor = binary("xor", INT_BOOL);
export const eq = binary("eq", ANY, toBool);
export const ne = binary("ne", ANY, toBool);
export const lt = binary("lt", ["b", "i", "u", "f"], toBool);
export const le = binary("le", ["b", "i", "u", "f"], toBool);
export const gt = binary("gt", ["b", "i", "u", "f"], toBool);
export const ge = binary("ge", ["b", "i", "u", "f"], toBool);
export const shiftLeft = binary("shift_left", INT);
export const shiftRightLogical = binary("shift_right_logical", INT);
export const shiftRightArithmetic = binary("shift_right_arithmetic", INT);

/** `lax.pow(x, y)`: x inexact; y of x's dtype, or an integer dtype. */
export function pow(x: LaxArg, y: LaxArg): Tracer {
  const [a, b] = operands("pow", [x, y]) as [In, In];
  checkKinds("pow", [a], INEXACT);
  const bd = avalOf(b).dtype;
  if (bd !== avalOf(a).dtype && !INT.includes(kindOf(bd))) {
    throw traceError("pow", `exponent dtype must equal the base's (${avalOf(a).dtype}) or be an integer, got ${bd}`);
  }
  const shape = elementwiseShape("pow", [a, b]);
  return bind1("pow", [a, b], {}, { dtype: avalOf(a).dtype, shape, weak: isWeak(a) && isWeak(b) });
}

/** `lax.select_n(which, ...cases)`: `which` bool (two cases) or int32; cases of one type. */
export function selectN(which: LaxArg, ...cases: LaxArg[]): Tracer {
  if (cases.length === 0) throw traceError("select_n", "needs at least one case");
  const w = operands("select_n", [which])[0]!;
  const cs = operands("select_n", cases);
  const wd = avalOf(w).dtype;
  if (wd === "bool") {
    if (cases.length > 2) throw traceError("select_n", `a bool selector picks from at most 2 cases, got ${cases.length}`);
  } else if (wd !== "int32") {
    throw traceError("select_n", `the selector must be bool or int32, got ${wd}`);
  }
  const d = sameDType("select_n", cs);
  const shape = elementwiseShape("select_n", cs);
  const ws = avalOf(w).shape;
  if (ws.length !== 0 && !sameShape(ws, shape)) throw traceError("select_n", `the selector ${showIn(w)} must be a scalar or have the cases' shape ${showShape(shape)}`);
  for (const c of cs) if (avalOf(c).shape.length === 0 && shape.length !== 0) throw traceError("select_n", `cases must have one shape, got ${cs.map(showIn).join(" and ")}`);
  return bind1("select_n", [w, ...cs], {}, { dtype: d, shape, weak: cs.every(isWeak) });
}

/** `lax.clamp(min, x, max)`: min and max scalars or of x's shape, all of one dtype. */
export function clamp(lo: LaxArg, x: LaxArg, hi: LaxArg): Tracer {
  const xs = operands("clamp", [x, lo, hi]);
  const [a, l, h] = xs as [In, In, In];
  sameDType("clamp", xs);
  checkKinds("clamp", xs, REAL_NUM);
  for (const b of [l, h]) {
    const s = avalOf(b).shape;
    if (s.length !== 0 && !sameShape(s, avalOf(a).shape)) throw traceError("clamp", `min and max must be scalars or of the operand's shape, got ${showIn(l)}, ${showIn(a)}, ${showIn(h)}`);
  }
  return bind1("clamp", [l, a, h], {}, { dtype: avalOf(a).dtype, shape: avalOf(a).shape, weak: isWeak(a) });
}

// --- dtype changes -----------------------------------------------------------------------

export function checkDType(op: string, dtype: unknown): DType {
  if (!isDType(dtype)) throw traceError(op, `unknown dtype ${JSON.stringify(dtype)}`);
  return dtype;
}

/** `lax.convert_element_type`; a same-dtype conversion that only changes weakness still records an eqn. */
export function convertElementType(x: LaxArg, newDType: DType, weakType = false): Tracer {
  const trace = requireTrace("convert_element_type");
  const nd = canonicalize(checkDType("convert_element_type", newDType), trace.x64);
  const [a] = operands("convert_element_type", [x]) as [In];
  if (isLitOperand(a)) {
    // A literal converts at trace time, exactly, as JAX does for Python scalars.
    throw new Error("internal: convert a literal with lit()");
  }
  if (a.dtype === nd && a.weak === weakType) return a;
  return bind1("convert_element_type", [a], { new_dtype: nd, weak_type: weakType }, { dtype: nd, shape: a.shape, weak: weakType });
}

export function bitcastConvertType(x: Tracer | Concrete, newDType: DType): Tracer {
  const a = asTracer("bitcast_convert_type", x);
  const nd = checkDType("bitcast_convert_type", newDType);
  const s0 = itemBytes(a.dtype);
  const s1 = itemBytes(nd);
  let shape: number[];
  if (s0 === s1) shape = [...a.shape];
  else if (s0 > s1) shape = [...a.shape, s0 / s1];
  else {
    if (a.shape[a.ndim - 1] !== s1 / s0) throw traceError("bitcast_convert_type", `${showAval(a.aval)} to ${nd} needs a last axis of size ${s1 / s0}`);
    shape = a.shape.slice(0, -1);
  }
  return bind1("bitcast_convert_type", [a], { new_dtype: nd }, { dtype: nd, shape });
}

function itemBytes(d: DType): number {
  return { bool: 1, int8: 1, uint8: 1, int16: 2, uint16: 2, float16: 2, bfloat16: 2, int32: 4, uint32: 4, float32: 4, int64: 8, uint64: 8, float64: 8, complex64: 8, complex128: 16 }[d];
}

// --- shapes ---------------------------------------------------------------------------------------

/** `lax.broadcast_in_dim(x, shape, broadcastDimensions)`. */
export function broadcastInDim(x: LaxArg, shape: Shape, broadcastDimensions: readonly number[]): Tracer {
  const [a] = operands("broadcast_in_dim", [x]) as [In];
  const av = avalOf(a);
  const target = checkShape("broadcast_in_dim", shape);
  const bd = [...broadcastDimensions];
  if (bd.length !== av.shape.length) throw traceError("broadcast_in_dim", `broadcast_dimensions ${JSON.stringify(bd)} must name one output axis per operand axis of ${showIn(a)}`);
  bd.forEach((d, i) => {
    if (!Number.isInteger(d) || d < 0 || d >= target.length) throw traceError("broadcast_in_dim", `broadcast dimension ${d} is out of range for shape ${showShape(target)}`);
    if (i > 0 && d <= bd[i - 1]!) throw traceError("broadcast_in_dim", `broadcast_dimensions ${JSON.stringify(bd)} must be strictly increasing`);
    const od = av.shape[i]!;
    if (od !== 1 && od !== target[d]) throw traceError("broadcast_in_dim", `operand ${showIn(a)} axis ${i} (size ${od}) cannot broadcast to axis ${d} of ${showShape(target)}`);
  });
  if (!isLitOperand(a) && sameShape(av.shape, target)) return a;
  return bind1("broadcast_in_dim", [a], { shape: target, broadcast_dimensions: bd }, { dtype: av.dtype, shape: target, weak: isWeak(a) });
}

export function reshape(x: Tracer | Concrete, newSizes: Shape): Tracer {
  const a = asTracer("reshape", x);
  const ns = checkShape("reshape", newSizes);
  if (prod(ns) !== a.size) throw traceError("reshape", `cannot reshape ${showAval(a.aval)} (size ${a.size}) into shape ${showShape(ns)}`);
  if (sameShape(ns, a.shape)) return a;
  return bind1("reshape", [a], { new_sizes: ns, dimensions: null }, { dtype: a.dtype, shape: ns, weak: a.weak });
}

export function transpose(x: Tracer | Concrete, permutation: readonly number[]): Tracer {
  const a = asTracer("transpose", x);
  const perm = [...permutation];
  if (perm.length !== a.ndim || [...perm].sort((p, q) => p - q).some((p, i) => p !== i)) {
    throw traceError("transpose", `permutation ${JSON.stringify(perm)} is not a permutation of the ${a.ndim} axes of ${showAval(a.aval)}`);
  }
  if (perm.every((p, i) => p === i)) return a;
  return bind1("transpose", [a], { permutation: perm }, { dtype: a.dtype, shape: perm.map((p) => a.shape[p]!), weak: a.weak });
}

export function squeeze(x: Tracer | Concrete, dimensions: readonly number[]): Tracer {
  const a = asTracer("squeeze", x);
  const dims = normAxes("squeeze", dimensions, a.ndim).sort((p, q) => p - q);
  for (const d of dims) if (a.shape[d] !== 1) throw traceError("squeeze", `cannot squeeze axis ${d} of ${showAval(a.aval)}: its size is ${a.shape[d]}, not 1`);
  if (dims.length === 0) return a;
  return bind1("squeeze", [a], { dimensions: dims }, { dtype: a.dtype, shape: a.shape.filter((_, i) => !dims.includes(i)), weak: a.weak });
}

/** `lax.expand_dims`: recorded as a `broadcast_in_dim`, as JAX does. */
export function expandDims(x: Tracer | Concrete, dimensions: readonly number[]): Tracer {
  const a = asTracer("expand_dims", x);
  const outRank = a.ndim + dimensions.length;
  const dims = normAxes("expand_dims", dimensions, outRank).sort((p, q) => p - q);
  const shape: number[] = [];
  const bd: number[] = [];
  let k = 0;
  for (let i = 0; i < outRank; i++) {
    if (dims.includes(i)) shape.push(1);
    else {
      shape.push(a.shape[k++]!);
      bd.push(i);
    }
  }
  return broadcastInDim(a, shape, bd);
}

export function concatenate(xs: readonly (Tracer | Concrete)[], dimension: number): Tracer {
  if (xs.length === 0) throw traceError("concatenate", "needs at least one array");
  const ts = xs.map((x) => asTracer("concatenate", x));
  const first = ts[0]!;
  const dim = normAxis("concatenate", dimension, Math.max(first.ndim, 1));
  if (first.ndim === 0) throw traceError("concatenate", "cannot concatenate rank-0 arrays (use jnp.stack)");
  const d = sameDType("concatenate", ts);
  for (const t of ts) {
    if (t.ndim !== first.ndim || t.shape.some((s, i) => i !== dim && s !== first.shape[i])) {
      throw traceError("concatenate", `arrays must have the same shape except along axis ${dim}, got ${ts.map((q) => showAval(q.aval)).join(", ")}`);
    }
  }
  if (ts.length === 1) return first;
  const shape = [...first.shape];
  shape[dim] = ts.reduce((n, t) => n + t.shape[dim]!, 0);
  return bind1("concatenate", ts, { dimension: dim }, { dtype: d, shape, weak: ts.every((t) => t.weak) });
}

/** `lax.pad(x, paddingValue, [[lo, hi, interior], ...])`; negative lo/hi crop. */
export function pad(x: Tracer | Concrete, paddingValue: LaxArg, config: readonly (readonly [number, number, number])[]): Tracer {
  const [a, p] = operands("pad", [x, paddingValue]) as [Tracer, In];
  if (avalOf(p).shape.length !== 0) throw traceError("pad", `the padding value must be a scalar, got ${showIn(p)}`);
  sameDType("pad", [a, p]);
  if (config.length !== a.ndim) throw traceError("pad", `padding_config needs one [lo, hi, interior] per axis of ${showAval(a.aval)}`);
  const shape = a.shape.map((n, i) => {
    const [lo, hi, interior] = config[i]!;
    if (interior < 0) throw traceError("pad", "interior padding must be non-negative");
    const out = lo + hi + n + Math.max(0, n - 1) * interior;
    if (out < 0) throw traceError("pad", `padding ${JSON.stringify(config[i])} makes axis ${i} negative`);
    return out;
  });
  return bind1("pad", [a, p], { padding_config: config.map((c) => [...c]) }, { dtype: a.dtype, shape, weak: a.weak });
}

/** `lax.slice(x, start, limit, strides?)`. */
export function slice(x: Tracer | Concrete, start: readonly number[], limit: readonly number[], strides?: readonly number[] | null): Tracer {
  const a = asTracer("slice", x);
  if (start.length !== a.ndim || limit.length !== a.ndim || (strides && strides.length !== a.ndim)) {
    throw traceError("slice", `start ${JSON.stringify(start)}, limit ${JSON.stringify(limit)} and strides must have one entry per axis of ${showAval(a.aval)}`);
  }
  const shape = a.shape.map((n, i) => {
    const s = start[i]!;
    const l = limit[i]!;
    const st = strides?.[i] ?? 1;
    if (!(Number.isInteger(s) && Number.isInteger(l) && Number.isInteger(st)) || s < 0 || l > n || l < s || st < 1) {
      throw traceError("slice", `axis ${i} of ${showAval(a.aval)}: start ${s}, limit ${l}, stride ${st} is not a valid slice`);
    }
    return Math.ceil((l - s) / st);
  });
  if (start.every((s) => s === 0) && limit.every((l, i) => l === a.shape[i]) && (!strides || strides.every((s) => s === 1))) return a;
  const st = strides && strides.some((s) => s !== 1) ? [...strides] : null;
  return bind1("slice", [a], { start_indices: [...start], limit_indices: [...limit], strides: st }, { dtype: a.dtype, shape, weak: a.weak });
}

/** `lax.dynamic_slice(x, startIndices, sliceSizes)`: starts are clamped into range, as in XLA. */
export function dynamicSlice(x: Tracer | Concrete, startIndices: readonly LaxArg[], sliceSizes: readonly number[]): Tracer {
  const a = asTracer("dynamic_slice", x);
  if (startIndices.length !== a.ndim || sliceSizes.length !== a.ndim) throw traceError("dynamic_slice", `needs one start index and one slice size per axis of ${showAval(a.aval)}`);
  const idx = indexScalars("dynamic_slice", startIndices);
  sliceSizes.forEach((s, i) => {
    if (!Number.isInteger(s) || s < 0 || s > a.shape[i]!) throw traceError("dynamic_slice", `slice size ${s} does not fit axis ${i} of ${showAval(a.aval)}`);
  });
  return bind1("dynamic_slice", [a, ...idx], { slice_sizes: [...sliceSizes] }, { dtype: a.dtype, shape: [...sliceSizes], weak: a.weak });
}

export function dynamicUpdateSlice(x: Tracer | Concrete, update: Tracer | Concrete, startIndices: readonly LaxArg[]): Tracer {
  const a = asTracer("dynamic_update_slice", x);
  const u = asTracer("dynamic_update_slice", update);
  if (u.dtype !== a.dtype) throw traceError("dynamic_update_slice", `update ${showAval(u.aval)} must have the operand's dtype ${a.dtype}`);
  if (u.ndim !== a.ndim || u.shape.some((s, i) => s > a.shape[i]!)) throw traceError("dynamic_update_slice", `update ${showAval(u.aval)} does not fit in ${showAval(a.aval)}`);
  if (startIndices.length !== a.ndim) throw traceError("dynamic_update_slice", `needs one start index per axis of ${showAval(a.aval)}`);
  const idx = indexScalars("dynamic_update_slice", startIndices);
  return bind1("dynamic_update_slice", [a, u, ...idx], {}, { dtype: a.dtype, shape: a.shape, weak: a.weak });
}

/** Scalar integer index operands; JS numbers take the first array index's dtype (lax.dynamic_slice promotes the rest). */
function indexScalars(op: string, xs: readonly LaxArg[]): In[] {
  const arrays = xs.filter((x) => !isJsScalar(x) && !isLitOperand(x)).map((x) => asTracer(op, x as Tracer | Concrete));
  for (const t of arrays) {
    if (t.ndim !== 0 || !INT.includes(kindOf(t.dtype))) throw traceError(op, `indices must be integer scalars, got ${showAval(t.aval)}`);
  }
  const dtype: DType = arrays.length ? arrays[0]!.dtype : "int32";
  let k = 0;
  return xs.map((x) => (isJsScalar(x) ? lit(x, dtype, false) : isLitOperand(x) ? x : arrays[k++]!));
}

/** `lax.iota(dtype, size)` or, with `shape`, `broadcasted_iota`. */
export function iota(dtype: DType, shape: Shape | number, dimension = 0): Tracer {
  const trace = requireTrace("iota");
  const d = canonicalize(checkDType("iota", dtype), trace.x64);
  const s = checkShape("iota", typeof shape === "number" ? [shape] : shape);
  const dim = normAxis("iota", dimension, s.length);
  return bind1("iota", [], { dtype: d, shape: s, dimension: dim, sharding: null }, { dtype: d, shape: s });
}

export function rev(x: Tracer | Concrete, dimensions: readonly number[]): Tracer {
  const a = asTracer("rev", x);
  const dims = normAxes("rev", dimensions, a.ndim);
  if (dims.length === 0) return a;
  return bind1("rev", [a], { dimensions: dims }, { dtype: a.dtype, shape: a.shape, weak: a.weak });
}

// --- reductions -------------------------------------------------------------------------------------

function reducer(prim: string, kinds: readonly Kind[]) {
  return (x: Tracer | Concrete, axes: readonly number[]): Tracer => {
    const a = asTracer(prim, x);
    checkKinds(prim, [a], kinds);
    const ax = normAxes(prim, axes, a.ndim);
    if (ax.length === 0) return a;
    const shape = a.shape.filter((_, i) => !ax.includes(i));
    return bind1(prim, [a], { axes: ax, out_sharding: null }, { dtype: a.dtype, shape, weak: a.weak });
  };
}

export const reduceSum = reducer("reduce_sum", NUM);
export const reduceProd = reducer("reduce_prod", NUM);
export const reduceMax = reducer("reduce_max", ANY);
export const reduceMin = reducer("reduce_min", ANY);
export const reduceAnd = reducer("reduce_and", INT_BOOL);
export const reduceOr = reducer("reduce_or", INT_BOOL);
export const reduceXor = reducer("reduce_xor", INT_BOOL);

function argReducer(prim: "argmax" | "argmin") {
  return (x: Tracer | Concrete, axis: number, indexDType: DType): Tracer => {
    const a = asTracer(prim, x);
    checkKinds(prim, [a], ["b", "i", "u", "f"]);
    const ax = normAxis(prim, axis, a.ndim);
    if (!INT.includes(kindOf(indexDType))) throw traceError(prim, `index_dtype must be an integer dtype, got ${indexDType}`);
    if (a.shape[ax] === 0) throw traceError(prim, `cannot take ${prim} of an empty axis (${showAval(a.aval)}, axis ${ax})`);
    const shape = a.shape.filter((_, i) => i !== ax);
    return bind1(prim, [a], { axes: [ax], index_dtype: indexDType }, { dtype: indexDType, shape });
  };
}
export const argmax = argReducer("argmax");
export const argmin = argReducer("argmin");

function cumulative(prim: string, kinds: readonly Kind[]) {
  return (x: Tracer | Concrete, axis = 0, reverse = false): Tracer => {
    const a = asTracer(prim, x);
    checkKinds(prim, [a], kinds);
    const ax = normAxis(prim, axis, a.ndim);
    return bind1(prim, [a], { axis: ax, reverse }, { dtype: a.dtype, shape: a.shape, weak: a.weak });
  };
}
export const cumsum = cumulative("cumsum", NUM);
export const cumprod = cumulative("cumprod", NUM);
export const cummax = cumulative("cummax", REAL_NUM);
export const cummin = cumulative("cummin", REAL_NUM);
export const cumlogsumexp = cumulative("cumlogsumexp", FLOAT);

// --- dot_general ---------------------------------------------------------------------------------------

export type DotDimensionNumbers = readonly [readonly [readonly number[], readonly number[]], readonly [readonly number[], readonly number[]]];

/**
 * `lax.dot_general(lhs, rhs, [[lhsContract, rhsContract], [lhsBatch, rhsBatch]])`.
 * Output axes: batch, then lhs free, then rhs free.
 */
export function dotGeneral(lhs: Tracer | Concrete, rhs: Tracer | Concrete, dimensionNumbers: DotDimensionNumbers, preferredElementType?: DType | null): Tracer {
  const a = asTracer("dot_general", lhs);
  const b = asTracer("dot_general", rhs);
  const [[lc, rc], [lb, rb]] = dimensionNumbers;
  const op = "dot_general";
  if (a.dtype !== b.dtype) throw traceError(op, `operands must have the same dtype, got ${showAval(a.aval)} and ${showAval(b.aval)}; jnp.matmul promotes`);
  checkKinds(op, [a, b], ["b", ...NUM]);
  if (lc.length !== rc.length || lb.length !== rb.length) throw traceError(op, `contracting and batch dimension lists must pair up, got ${JSON.stringify(dimensionNumbers)}`);
  const lcs = lc.map((d) => normAxis(op, d, a.ndim));
  const rcs = rc.map((d) => normAxis(op, d, b.ndim));
  const lbs = lb.map((d) => normAxis(op, d, a.ndim));
  const rbs = rb.map((d) => normAxis(op, d, b.ndim));
  lcs.forEach((d, i) => {
    if (a.shape[d] !== b.shape[rcs[i]!]) throw traceError(op, `contracting axis ${d} of ${showAval(a.aval)} (size ${a.shape[d]}) does not match axis ${rcs[i]} of ${showAval(b.aval)} (size ${b.shape[rcs[i]!]})`);
  });
  lbs.forEach((d, i) => {
    if (a.shape[d] !== b.shape[rbs[i]!]) throw traceError(op, `batch axis ${d} of ${showAval(a.aval)} does not match axis ${rbs[i]} of ${showAval(b.aval)}`);
  });
  const lfree = a.shape.map((_, i) => i).filter((i) => !lcs.includes(i) && !lbs.includes(i));
  const rfree = b.shape.map((_, i) => i).filter((i) => !rcs.includes(i) && !rbs.includes(i));
  const shape = [...lbs.map((d) => a.shape[d]!), ...lfree.map((d) => a.shape[d]!), ...rfree.map((d) => b.shape[d]!)];
  const pet = preferredElementType ?? null;
  return bind1(
    op,
    [a, b],
    { dimension_numbers: [[lcs, rcs], [lbs, rbs]], precision: null, preferred_element_type: pet },
    { dtype: pet ?? a.dtype, shape },
  );
}

// --- gather / scatter ---------------------------------------------------------------------------------------

export interface GatherDimensionNumbers {
  readonly offset_dims: readonly number[];
  readonly collapsed_slice_dims: readonly number[];
  readonly start_index_map: readonly number[];
  readonly operand_batching_dims: readonly number[];
  readonly start_indices_batching_dims: readonly number[];
}

/** "clip" clamps indices into range; "fill" returns `fill_value` (NaN/min int) for out-of-bounds slices; "promise_in_bounds" trusts them. */
export type GatherMode = "clip" | "fill" | "promise_in_bounds";

/**
 * `lax.gather` with XLA's semantics (index vector dim is the last axis of
 * `indices`). Output shape: batch axes of `indices` with the offset axes
 * inserted at `offset_dims`.
 */
export function gather(x: Tracer | Concrete, indices: Tracer | Concrete, dn: GatherDimensionNumbers, sliceSizes: readonly number[], opts: { mode?: GatherMode; indicesAreSorted?: boolean; uniqueIndices?: boolean } = {}): Tracer {
  const op = "gather";
  const a = asTracer(op, x);
  const idx = asTracer(op, indices);
  if (!INT.includes(kindOf(idx.dtype))) throw traceError(op, `indices must be integers, got ${showAval(idx.aval)}`);
  if (idx.ndim < 1) throw traceError(op, "indices need at least one axis (the last holds index vectors)");
  if (sliceSizes.length !== a.ndim) throw traceError(op, `slice_sizes needs one entry per axis of ${showAval(a.aval)}`);
  const nIdx = idx.shape[idx.ndim - 1]!;
  if (dn.start_index_map.length !== nIdx) throw traceError(op, `start_index_map has ${dn.start_index_map.length} entries but index vectors have ${nIdx}`);
  const batchShape = idx.shape.slice(0, -1);
  const offsetSizes = sliceSizes.filter((_, i) => !dn.collapsed_slice_dims.includes(i) && !dn.operand_batching_dims.includes(i));
  const outRank = batchShape.length + offsetSizes.length;
  const shape: number[] = [];
  let bi = 0;
  let oi = 0;
  for (let i = 0; i < outRank; i++) {
    if (dn.offset_dims.includes(i)) shape.push(offsetSizes[oi++]!);
    else shape.push(batchShape[bi++]!);
  }
  return bind1(
    op,
    [a, idx],
    {
      dimension_numbers: { ...dn, offset_dims: [...dn.offset_dims], collapsed_slice_dims: [...dn.collapsed_slice_dims], start_index_map: [...dn.start_index_map], operand_batching_dims: [...dn.operand_batching_dims], start_indices_batching_dims: [...dn.start_indices_batching_dims] },
      slice_sizes: [...sliceSizes],
      indices_are_sorted: opts.indicesAreSorted ?? false,
      unique_indices: opts.uniqueIndices ?? false,
      mode: opts.mode ?? "fill",
      fill_value: null,
    },
    { dtype: a.dtype, shape, weak: a.weak },
  );
}

export interface ScatterDimensionNumbers {
  readonly update_window_dims: readonly number[];
  readonly inserted_window_dims: readonly number[];
  readonly scatter_dims_to_operand_dims: readonly number[];
  readonly operand_batching_dims: readonly number[];
  readonly scatter_indices_batching_dims: readonly number[];
}

export type ScatterPrim = "scatter" | "scatter_add" | "scatter_mul" | "scatter_min" | "scatter_max";

/** `lax.scatter` / `scatter_add` / ...: the result has the operand's type. */
export function scatter(prim: ScatterPrim, x: Tracer | Concrete, indices: Tracer | Concrete, updates: Tracer | Concrete, dn: ScatterDimensionNumbers, opts: { mode?: "clip" | "fill" | "promise_in_bounds"; indicesAreSorted?: boolean; uniqueIndices?: boolean } = {}): Tracer {
  const a = asTracer(prim, x);
  const idx = asTracer(prim, indices);
  const u = asTracer(prim, updates);
  if (!INT.includes(kindOf(idx.dtype))) throw traceError(prim, `indices must be integers, got ${showAval(idx.aval)}`);
  if (u.dtype !== a.dtype) throw traceError(prim, `updates ${showAval(u.aval)} must have the operand's dtype ${a.dtype}`);
  return bind1(
    prim,
    [a, idx, u],
    {
      dimension_numbers: { update_window_dims: [...dn.update_window_dims], inserted_window_dims: [...dn.inserted_window_dims], scatter_dims_to_operand_dims: [...dn.scatter_dims_to_operand_dims], operand_batching_dims: [...dn.operand_batching_dims], scatter_indices_batching_dims: [...dn.scatter_indices_batching_dims] },
      indices_are_sorted: opts.indicesAreSorted ?? false,
      unique_indices: opts.uniqueIndices ?? false,
      mode: opts.mode ?? "fill",
    },
    { dtype: a.dtype, shape: a.shape, weak: a.weak },
  );
}

// --- misc -------------------------------------------------------------------------------------------------------

/**
 * `lax.stop_gradient(x)`: `x`, with a zero derivative for every
 * transformation (grad, jvp, ...). Takes an array or a pytree of arrays
 * (other leaves are returned as they are).
 */
export function stopGradient<T>(x: T): T extends Tracer | Concrete ? Tracer : T {
  if (x instanceof Tracer || isConcreteArray(x)) {
    const t = asTracer("stop_gradient", x as Tracer | Concrete);
    return bind1("stop_gradient", [t], {}, { dtype: t.dtype, shape: t.shape, weak: t.weak }) as never;
  }
  return treeMap((l: unknown) => (l instanceof Tracer || isConcreteArray(l) ? stopGradient(l) : l), x) as never;
}

/** `lax.sort` along one dimension of one operand. */
export function sort(x: Tracer | Concrete, dimension = -1, isStable = true): Tracer {
  const a = asTracer("sort", x);
  const d = normAxis("sort", dimension, a.ndim);
  return bind1("sort", [a], { dimension: d, is_stable: isStable, num_keys: 1 }, { dtype: a.dtype, shape: a.shape, weak: a.weak });
}

/** Record a primitive whose output types the caller computed (control flow, random). */
export function rawBind(prim: string, inputs: readonly In[], params: { [k: string]: ParamValue }, outs: readonly { aval: Aval; weak?: boolean }[]): Tracer[] {
  return bind(prim, inputs, params, outs);
}

export type { SubProgram };

// Collectives over named axes and sharding constraints live in their own
// modules; they are lax functions all the same (`lax.psum`).
export { psum, pmean, pmax, pmin, allGather, psumScatter, ppermute, allToAll, axisIndex, axisSize, type AxisName } from "./collectives.js";
export { withShardingConstraint } from "./sharding.js";
