/**
 * Generated jnp cases (random dtypes, shapes, broadcasting, special values,
 * indexing): each is a builder over arrays and the same expression in
 * Python. test/trace/lib/jnp.test.ts traces them and compares with jax.jit;
 * test/trace/eager.test.ts runs them eagerly on DeviceArrays and compares
 * with jax.numpy op by op.
 */
import type { DType } from "../../../src/values/dtype.js";
import { array as hostArray } from "../../../src/values/ndarray.js";
import { canonicalize } from "../../../src/trace/dtypes.js";
import { jnp } from "../../../src/trace/lib/index.js";
import type { Tracer } from "../../../src/trace/tracer.js";
import type { Case } from "./cases.js";
import { pick, randInt, randomArray, rng } from "./oracle.js";

export const FLOATS: DType[] = ["float16", "bfloat16", "float32", "float64"];
export const INTS: DType[] = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"];
export const ALL: DType[] = ["bool", ...INTS, ...FLOATS];

interface Unary {
  ts: (x: Tracer) => Tracer;
  py: string;
  dtypes: DType[];
  range?: { lo?: number; hi?: number; positive?: boolean };
}
const U = (ts: (x: Tracer) => Tracer, py: string, dtypes: DType[], range?: Unary["range"]): Unary => ({ ts, py, dtypes, range });
const UNARY: Unary[] = [
  U(jnp.exp, "jnp.exp", [...FLOATS, "int32"]),
  U(jnp.exp2, "jnp.exp2", FLOATS),
  U(jnp.expm1, "jnp.expm1", FLOATS),
  U(jnp.log, "jnp.log", [...FLOATS, "int16"], { positive: true }),
  U(jnp.log1p, "jnp.log1p", FLOATS, { positive: true }),
  U(jnp.log2, "jnp.log2", FLOATS, { positive: true }),
  U(jnp.log10, "jnp.log10", FLOATS, { positive: true }),
  U(jnp.sqrt, "jnp.sqrt", [...FLOATS, "uint8"], { positive: true }),
  U(jnp.cbrt, "jnp.cbrt", FLOATS),
  U(jnp.tanh, "jnp.tanh", FLOATS),
  U(jnp.sin, "jnp.sin", FLOATS),
  U(jnp.cos, "jnp.cos", FLOATS),
  U(jnp.tan, "jnp.tan", FLOATS),
  U(jnp.arcsin, "jnp.arcsin", FLOATS, { lo: -1, hi: 1 }),
  U(jnp.arccos, "jnp.arccos", FLOATS, { lo: -1, hi: 1 }),
  U(jnp.arctan, "jnp.arctan", FLOATS),
  U(jnp.sinh, "jnp.sinh", FLOATS),
  U(jnp.cosh, "jnp.cosh", FLOATS),
  U(jnp.arcsinh, "jnp.arcsinh", FLOATS),
  U(jnp.arccosh, "jnp.arccosh", FLOATS, { lo: 1, hi: 5 }),
  U(jnp.arctanh, "jnp.arctanh", FLOATS, { lo: -0.99, hi: 0.99 }),
  U(jnp.abs, "jnp.abs", ALL),
  U(jnp.negative, "jnp.negative", [...FLOATS, "int8", "int32", "int64"]),
  U(jnp.sign, "jnp.sign", [...FLOATS, "int16", "int32"]),
  U(jnp.floor, "jnp.floor", ALL),
  U(jnp.ceil, "jnp.ceil", ALL),
  U(jnp.round, "jnp.round", [...FLOATS, "int32"]),
  U(jnp.trunc, "jnp.trunc", FLOATS),
  U(jnp.square, "jnp.square", [...FLOATS, "int32", "bool"]),
  U(jnp.reciprocal, "jnp.reciprocal", [...FLOATS, "int32"], { positive: true }),
  U(jnp.isnan, "jnp.isnan", ALL),
  U(jnp.isinf, "jnp.isinf", ALL),
  U(jnp.isfinite, "jnp.isfinite", ALL),
  U(jnp.logicalNot, "jnp.logical_not", ALL),
  U((x) => jnp.power(x, 3), "(lambda x: jnp.power(x, 3))", [...FLOATS, "int32", "uint8"], { lo: 0, hi: 5 }),
  U((x) => jnp.power(x, 2.5), "(lambda x: jnp.power(x, 2.5))", FLOATS, { positive: true }),
  U((x) => jnp.clip(x, -1, 2), "(lambda x: jnp.clip(x, -1, 2))", [...FLOATS, "int32", "int8"]),
  U((x) => x.astype("float32"), "(lambda x: x.astype(jnp.float32))", ALL),
  U((x) => x.astype("int32"), "(lambda x: x.astype(jnp.int32))", ALL, { lo: -100, hi: 100 }),
  U((x) => x.astype("bool"), "(lambda x: x.astype(jnp.bool_))", ALL),
];

interface Binary {
  ts: (x: Tracer, y: Tracer) => Tracer;
  py: string;
  dtypes: DType[];
  range?: { lo?: number; hi?: number; positive?: boolean };
  rhs?: { lo?: number; hi?: number; positive?: boolean };
}
const B = (ts: Binary["ts"], py: string, dtypes: DType[], range?: Binary["range"], rhs?: Binary["rhs"]): Binary => ({ ts, py, dtypes, range, rhs });
const BINARY: Binary[] = [
  B(jnp.add, "jnp.add", ALL),
  B(jnp.subtract, "jnp.subtract", [...FLOATS, ...INTS]),
  B(jnp.multiply, "jnp.multiply", ALL),
  B(jnp.divide, "jnp.divide", [...FLOATS, "int32", "uint8"], undefined, { positive: true }),
  B(jnp.floorDivide, "jnp.floor_divide", [...FLOATS, "int32", "int8", "uint16"], undefined, { positive: true }),
  B(jnp.remainder, "jnp.remainder", [...FLOATS, "int32", "int16", "uint8"], undefined, { positive: true }),
  B(jnp.power, "jnp.power", [...FLOATS, "int32"], { lo: 0, hi: 3 }, { lo: 0, hi: 3 }),
  B(jnp.maximum, "jnp.maximum", ALL),
  B(jnp.minimum, "jnp.minimum", ALL),
  B(jnp.arctan2, "jnp.arctan2", FLOATS),
  B(jnp.logaddexp, "jnp.logaddexp", FLOATS),
  B(jnp.equal, "jnp.equal", ALL),
  B(jnp.notEqual, "jnp.not_equal", ALL),
  B(jnp.less, "jnp.less", ALL),
  B(jnp.lessEqual, "jnp.less_equal", ALL),
  B(jnp.greater, "jnp.greater", ALL),
  B(jnp.greaterEqual, "jnp.greater_equal", ALL),
  B(jnp.logicalAnd, "jnp.logical_and", ALL),
  B(jnp.logicalOr, "jnp.logical_or", ALL),
  B(jnp.logicalXor, "jnp.logical_xor", ALL),
  B(jnp.bitwiseAnd, "jnp.bitwise_and", ["bool", ...INTS]),
  B(jnp.bitwiseOr, "jnp.bitwise_or", ["bool", ...INTS]),
  B(jnp.bitwiseXor, "jnp.bitwise_xor", ["bool", ...INTS]),
  B((x, y) => jnp.where(x.gt(y), x, y), "(lambda x, y: jnp.where(x > y, x, y))", ALL),
];

const SHAPES: [number[], number[]][] = [
  [[4], [4]],
  [[2, 3], [2, 3]],
  [[2, 3], [3]],
  [[3, 1], [1, 4]],
  [[], [5]],
  [[2, 1, 3], [4, 1]],
  [[0, 3], [3]],
];

export function unaryCases(seed: number, x64: boolean, n: number): Case[] {
  const r = rng(seed);
  const out: Case[] = [];
  while (out.length < n) {
    const op = pick(r, UNARY);
    const dtype = pick(r, op.dtypes);
    if (!x64 && canonicalize(dtype, false) !== dtype) continue;
    const shape = pick(r, SHAPES)[0];
    const a = randomArray(r, dtype, shape, { specials: !op.range, ...op.range });
    out.push({ desc: `${op.py}(${dtype}[${shape}])`, args: [a], ts: ([x]) => op.ts(x!), py: `${op.py}(x0)` });
  }
  return out;
}

export function binaryCases(seed: number, x64: boolean, n: number): Case[] {
  const r = rng(seed);
  const out: Case[] = [];
  while (out.length < n) {
    const op = pick(r, BINARY);
    const da = pick(r, op.dtypes);
    const db = r() < 0.6 ? da : pick(r, op.dtypes);
    if (!x64 && (canonicalize(da, false) !== da || canonicalize(db, false) !== db)) continue;
    if (op.py === "jnp.subtract" && (da === "bool" || db === "bool")) continue;
    const [sa, sb] = r() < 0.5 ? pick(r, SHAPES) : ([...pick(r, SHAPES)].reverse() as [number[], number[]]);
    const a = randomArray(r, da, sa, { specials: !op.range, ...op.range });
    const b = randomArray(r, db, sb, { specials: !op.rhs && !op.range, ...(op.rhs ?? op.range) });
    out.push({ desc: `${op.py}(${da}[${sa}], ${db}[${sb}])`, args: [a, b], ts: ([x, y]) => op.ts(x!, y!), py: `${op.py}(x0, x1)` });
  }
  return out;
}

// --- reductions, shapes, linear algebra, creation ------------------------------------------------

export function reductionCases(seed: number, x64: boolean): Case[] {
  const r = rng(seed);
  const out: Case[] = [];
  const dts: DType[] = x64 ? ALL : ALL.filter((d) => canonicalize(d, false) === d);
  const reds: { ts: (x: Tracer, o: jnp.AxisArg) => Tracer; py: string; kinds?: DType[] }[] = [
    { ts: jnp.sum, py: "jnp.sum" },
    { ts: jnp.prod, py: "jnp.prod" },
    { ts: jnp.max, py: "jnp.max" },
    { ts: jnp.min, py: "jnp.min" },
    { ts: jnp.mean, py: "jnp.mean" },
    { ts: jnp.all, py: "jnp.all" },
    { ts: jnp.any, py: "jnp.any" },
    { ts: (x, o) => jnp.variance(x, o), py: "jnp.var" },
  ];
  for (let i = 0; i < 40; i++) {
    const red = pick(r, reds);
    const dtype = pick(r, dts);
    const shape = pick(r, [[5], [2, 3], [3, 1, 4], [2, 2, 2]]);
    const axisChoice = randInt(r, 0, 3);
    const axis = axisChoice === 0 ? null : axisChoice === 1 ? -1 : axisChoice === 2 ? 0 : shape.length > 1 ? [0, shape.length - 1] : 0;
    const keepdims = r() < 0.4;
    const a = randomArray(r, dtype, shape, { lo: -3, hi: 3 });
    const pyAxis = axis === null ? "None" : Array.isArray(axis) ? `(${axis.join(", ")},)` : String(axis);
    out.push({ desc: `${red.py}(${dtype}[${shape}], axis=${pyAxis}, keepdims=${keepdims})`, args: [a], ts: ([x]) => red.ts(x!, { axis, keepdims }), py: `${red.py}(x0, axis=${pyAxis}, keepdims=${keepdims ? "True" : "False"})` });
  }
  for (let i = 0; i < 12; i++) {
    const dtype = pick(r, dts.filter((d) => d !== "bool"));
    const shape = pick(r, [[5], [2, 3], [3, 4, 2]]);
    const axis = randInt(r, -1, shape.length - 1);
    const a = randomArray(r, dtype, shape, { lo: -3, hi: 3 });
    const f = pick(r, ["argmax", "argmin", "cumsum", "cumprod"] as const);
    const keep = r() < 0.3 && f.startsWith("arg");
    out.push({
      desc: `${f}(${dtype}[${shape}], ${axis})`,
      args: [a],
      ts: ([x]) => (f === "argmax" ? jnp.argmax(x!, { axis, keepdims: keep }) : f === "argmin" ? jnp.argmin(x!, { axis, keepdims: keep }) : f === "cumsum" ? jnp.cumsum(x!, { axis }) : jnp.cumprod(x!, { axis })),
      py: f.startsWith("arg") ? `jnp.${f}(x0, axis=${axis}, keepdims=${keep ? "True" : "False"})` : `jnp.${f}(x0, axis=${axis})`,
    });
  }
  return out;
}

export function shapeCases(seed: number): Case[] {
  const r = rng(seed);
  const a = randomArray(r, "float32", [2, 3, 4]);
  const b = randomArray(r, "float32", [2, 3, 4]);
  const i = randomArray(r, "int32", [2, 3]);
  const c: Case[] = [
    { desc: "reshape", args: [a], ts: ([x]) => x!.reshape([4, -1]), py: "x0.reshape(4, -1)" },
    { desc: "ravel", args: [a], ts: ([x]) => jnp.ravel(x!), py: "jnp.ravel(x0)" },
    { desc: "transpose", args: [a], ts: ([x]) => x!.transpose([2, 0, 1]), py: "x0.transpose(2, 0, 1)" },
    { desc: "T", args: [a], ts: ([x]) => x!.T, py: "x0.T" },
    { desc: "swapaxes", args: [a], ts: ([x]) => jnp.swapaxes(x!, 0, 2), py: "jnp.swapaxes(x0, 0, 2)" },
    { desc: "moveaxis", args: [a], ts: ([x]) => jnp.moveaxis(x!, 0, -1), py: "jnp.moveaxis(x0, 0, -1)" },
    { desc: "expandDims", args: [a], ts: ([x]) => jnp.expandDims(x!, [0, -1]), py: "jnp.expand_dims(x0, (0, -1))" },
    { desc: "squeeze", args: [a], ts: ([x]) => jnp.squeeze(x!.get(jnp.slice(0, 1))), py: "jnp.squeeze(x0[0:1])" },
    { desc: "concatenate", args: [a, b], ts: ([x, y]) => jnp.concatenate([x!, y!], 1), py: "jnp.concatenate([x0, x1], 1)" },
    { desc: "concatenate mixed dtypes", args: [a, i], ts: ([x, y]) => jnp.concatenate([x!.get(0, "0:2, 0:3"), y!], 1), py: "jnp.concatenate([x0[0, 0:2, 0:3], x1], 1)" },
    { desc: "stack", args: [a, b], ts: ([x, y]) => jnp.stack([x!, y!], -1), py: "jnp.stack([x0, x1], -1)" },
    { desc: "broadcastTo", args: [i], ts: ([y]) => jnp.broadcastTo(y!.get(0), [4, 3]), py: "jnp.broadcast_to(x0[0], (4, 3))" },
    { desc: "flip", args: [a], ts: ([x]) => jnp.flip(x!, 1), py: "jnp.flip(x0, 1)" },
    { desc: "unstack", args: [a], ts: ([x]) => jnp.unstack(x!, 1), py: "tuple(x0[:, k] for k in range(3))" },
    { desc: "outer", args: [a, b], ts: ([x, y]) => jnp.outer(x!.get(0, 0), y!.get(1, 1)), py: "jnp.outer(x0[0, 0], x1[1, 1])" },
  ];
  return c;
}

export function linalgCases(seed: number, x64: boolean): Case[] {
  const r = rng(seed);
  const out: Case[] = [];
  const dts: DType[] = x64 ? ["float32", "float64", "int32", "float16", "bfloat16"] : ["float32", "int32", "float16", "bfloat16"];
  const shapes: [number[], number[]][] = [
    [[3], [3]],
    [[2, 3], [3]],
    [[3], [3, 4]],
    [[2, 3], [3, 4]],
    [[5, 2, 3], [3, 4]],
    [[5, 2, 3], [5, 3, 4]],
    [[1, 2, 3], [5, 3, 4]],
    [[2, 1, 2, 3], [3, 3, 2]],
  ];
  for (let k = 0; k < 24; k++) {
    const [sa, sb] = pick(r, shapes);
    const da = pick(r, dts);
    const db = r() < 0.7 ? da : pick(r, dts);
    const a = randomArray(r, da, sa, { lo: -2, hi: 2 });
    const b = randomArray(r, db, sb, { lo: -2, hi: 2 });
    const f = pick(r, ["matmul", "dot"] as const);
    if (f === "dot" && sa.length > 2 && sb.length > 2) continue;
    out.push({ desc: `${f}(${da}[${sa}], ${db}[${sb}])`, args: [a, b], ts: ([x, y]) => (f === "matmul" ? jnp.matmul(x!, y!) : jnp.dot(x!, y!)), py: `jnp.${f}(x0, x1)` });
  }
  const a = randomArray(r, "float32", [2, 3, 4]);
  const b = randomArray(r, "float32", [2, 4, 5]);
  const m = randomArray(r, "float32", [3, 4]);
  for (const [spec, args, py] of [
    ["bij,bjk->bik", [a, b], "jnp.einsum('bij,bjk->bik', x0, x1)"],
    ["ij,kj->ik", [m, m], "jnp.einsum('ij,kj->ik', x0, x1)"],
    ["ij->ji", [m], "jnp.einsum('ij->ji', x0)"],
    ["ij->", [m], "jnp.einsum('ij->', x0)"],
    ["bij,bjk->bki", [a, b], "jnp.einsum('bij,bjk->bki', x0, x1)"],
    ["ij,ij->i", [m, m], "jnp.einsum('ij,ij->i', x0, x1)"],
  ] as const) {
    out.push({ desc: `einsum ${spec}`, args: [...args], ts: (xs) => jnp.einsum(spec, ...xs), py });
  }
  return out;
}

export function creationCases(x64: boolean): Case[] {
  const c: Case[] = [
    { desc: "zeros", args: [], ts: () => jnp.zeros([2, 3]), py: "jnp.zeros((2, 3))" },
    { desc: "ones int8", args: [], ts: () => jnp.ones([3], "int8"), py: "jnp.ones(3, jnp.int8)" },
    { desc: "full weak", args: [], ts: () => jnp.full([2], 2.5).add(jnp.ones([2], "float16")), py: "jnp.full((2,), 2.5) + jnp.ones(2, jnp.float16)" },
    { desc: "arange", args: [], ts: () => jnp.arange(5), py: "jnp.arange(5)" },
    { desc: "arange step", args: [], ts: () => jnp.arange(1, 7, 2), py: "jnp.arange(1, 7, 2)" },
    { desc: "arange float", args: [], ts: () => jnp.arange(0, 1, 0.1), py: "jnp.arange(0, 1, 0.1)" },
    { desc: "arange dtype", args: [], ts: () => jnp.arange(-3, 3, 1.5, "float32"), py: "jnp.arange(-3, 3, 1.5, dtype=jnp.float32)" },
    { desc: "linspace", args: [], ts: () => jnp.linspace(0, 1, 5), py: "jnp.linspace(0, 1, 5)" },
    // Constant bounds: XLA constant-folds the whole graph and, depending on where jnp's nested jit
    // puts call boundaries, rewrites stop/9 as stop*(1/9) or not: 1 ulp of stop/9 apart, which the
    // cancellation in start*(1-t) + stop/9*i leaves as ~1 ulp of the bounds.
    { desc: "linspace noendpoint (constant)", args: [], ts: () => jnp.linspace(-2.5, 7, 9, { endpoint: false }), py: "jnp.linspace(-2.5, 7, 9, endpoint=False)", tol: { rtol: 0, atol: 2 * 2 ** -52 * 7 }, eagerTol: { rtol: 0, atol: 2 * (x64 ? 2 ** -52 : 2 ** -23) * 7 } }, // 2 ulp of the largest bound (eagerly: in the mode's float)
    { desc: "linspace traced bounds", args: [hostArray([-2.5, 7], x64 ? "float64" : "float32")], ts: ([b]) => jnp.linspace(b!.get(0), b!.get(1), 9, { endpoint: false }), py: "jnp.linspace(x0[0], x0[1], 9, endpoint=False)" },
    { desc: "linspace f16", args: [], ts: () => jnp.linspace(1, 3, 4, { dtype: "float16" }), py: "jnp.linspace(1, 3, 4, dtype=jnp.float16)" },
    { desc: "eye", args: [], ts: () => jnp.eye(3), py: "jnp.eye(3)" },
    { desc: "eye k", args: [], ts: () => jnp.eye(3, 4, { k: 1, dtype: "int32" }), py: "jnp.eye(3, 4, k=1, dtype=jnp.int32)" },
    { desc: "asarray list", args: [], ts: () => jnp.asarray([[1, 2], [3, 4]]).mul(1.5), py: "jnp.asarray([[1, 2], [3, 4]]) * 1.5" },
    { desc: "asarray float list", args: [], ts: () => jnp.asarray([0.1, 0.2]), py: "jnp.asarray([0.1, 0.2])" },
    { desc: "zerosLike", args: [], ts: () => jnp.zerosLike(jnp.ones([2], "int16")), py: "jnp.zeros_like(jnp.ones(2, jnp.int16))" },
  ];
  return c;
}

export function indexingCases(seed: number): Case[] {
  const r = rng(seed);
  const a = randomArray(r, "float32", [4, 5, 3]);
  const idx = randomArray(r, "int32", [2, 3], { lo: -4, hi: 3 });
  const idx1 = randomArray(r, "int32", [3], { lo: 0, hi: 4 });
  const v = randomArray(r, "float32", [5, 3]);
  const S = jnp.slice;
  return [
    { desc: "x[1]", args: [a], ts: ([x]) => x!.get(1), py: "x0[1]" },
    { desc: "x[-1, 2]", args: [a], ts: ([x]) => x!.get(-1, 2), py: "x0[-1, 2]" },
    { desc: "x[1:3]", args: [a], ts: ([x]) => x!.get(S(1, 3)), py: "x0[1:3]" },
    { desc: "x[::2, ::-1]", args: [a], ts: ([x]) => x!.get(S(null, null, 2), S(null, null, -1)), py: "x0[::2, ::-1]" },
    { desc: "x[3:0:-2]", args: [a], ts: ([x]) => x!.get(S(3, 0, -2)), py: "x0[3:0:-2]" },
    { desc: "string index", args: [a], ts: ([x]) => x!.get("1:, None, ..., ::2"), py: "x0[1:, None, ..., ::2]" },
    { desc: "x[..., 0]", args: [a], ts: ([x]) => x!.get("...", 0), py: "x0[..., 0]" },
    { desc: "x[None, 1, :, None]", args: [a], ts: ([x]) => x!.get(null, 1, S(), null), py: "x0[None, 1, :, None]" },
    { desc: "x[idx]", args: [a, idx], ts: ([x, i]) => x!.get(i!), py: "x0[x1]" },
    { desc: "x[:, idx1]", args: [a, idx1], ts: ([x, i]) => x!.get(S(), i!), py: "x0[:, x1]" },
    { desc: "x[idx1, :, idx1]", args: [a, idx1], ts: ([x, i]) => x!.get(i!, S(), jnp.clip(i!, 0, 2)), py: "x0[x1, :, jnp.clip(x1, 0, 2)]" },
    { desc: "x[1, idx1]", args: [a, idx1], ts: ([x, i]) => x!.get(1, i!), py: "x0[1, x1]" },
    { desc: "x[idx1, 1:3, 0]", args: [a, idx1], ts: ([x, i]) => x!.get(i!, S(1, 3), 0), py: "x0[x1, 1:3, 0]" },
    { desc: "x[js list]", args: [a], ts: ([x]) => x!.get([0, 2, -1]), py: "x0[jnp.array([0, 2, -1])]" },
    { desc: "x[scalar tracer]", args: [a, idx1], ts: ([x, i]) => x!.get(i!.get(0)), py: "x0[x1[0]]" },
    { desc: "x.at[1].set(v)", args: [a, v], ts: ([x, u]) => x!.at(1).set(u!), py: "x0.at[1].set(x1)" },
    { desc: "x.at[:, 1].add(2)", args: [a], ts: ([x]) => x!.at(S(), 1).add(2), py: "x0.at[:, 1].add(2)" },
    { desc: "x.at[idx1].add(v) duplicates", args: [a, idx1, v], ts: ([x, i, u]) => x!.at(i!).add(u!.get(null)), py: "x0.at[x1].add(x2[None])" },
    { desc: "x.at[::2, ::-1].set(0)", args: [a], ts: ([x]) => x!.at(S(null, null, 2), S(null, null, -1)).set(0), py: "x0.at[::2, ::-1].set(0)" },
    { desc: "x.at[idx1, 0].max(v)", args: [a, idx1, v], ts: ([x, i, u]) => x!.at(i!, 0).max(u!.get(S(0, 3))), py: "x0.at[x1, 0].max(x2[0:3])" },
    { desc: "x.at[1:3].multiply(2)", args: [a], ts: ([x]) => x!.at(S(1, 3)).multiply(2), py: "x0.at[1:3].multiply(2)" },
    { desc: "take", args: [a, idx1], ts: ([x, i]) => jnp.take(x!, i!, 1), py: "jnp.take(x0, x1, 1)" },
  ];
}
