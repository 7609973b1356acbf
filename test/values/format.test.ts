import assert from "node:assert/strict";
import { DTYPES, type DType, dtypeInfo, numberToBfloat16Bits, numberToFloat16Bits } from "../../src/values/dtype.js";
import { BridgeInputError } from "../../src/values/errors.js";
import {
  type PrintOptions,
  formatNDArray,
  formatSummary,
  getPrintOptions,
  resetPrintOptions,
  setPrintOptions,
  withPrintOptions,
} from "../../src/values/format.js";
import { NDArray, array } from "../../src/values/ndarray.js";
import { runPython } from "../support/python.js";
import { mulberry32 } from "../support/random.js";

// ---------------------------------------------------------------------------
// Case generation (seeded, so a failure can be replayed with FORMAT_TEST_SEED)
// ---------------------------------------------------------------------------

const SEED = Number(process.env.FORMAT_TEST_SEED ?? 20240601);


const rand = mulberry32(SEED);
const randInt = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const randBig = (lo: bigint, hi: bigint): bigint => {
  const span = hi - lo + 1n;
  let r = 0n;
  for (let k = 0; k < 5; k++) r = (r << 16n) | BigInt(randInt(0, 0xffff));
  return lo + (r % span);
};

/** How the values of one array are drawn: one regime per array, since one extreme value changes the whole array's layout. */
const FLOAT_REGIMES = ["ints", "decimals", "uniform", "wide", "special", "tiny", "huge", "bits", "edges", "mixed", "zeros"] as const;
type Regime = (typeof FLOAT_REGIMES)[number];

const EDGE_VALUES = [
  1e-4, 9.999e-5, 1.0001e-4, Math.fround(1e-4), 1e8, 99999999, 1e6, 999999.9, 999999, 1e3, 999.9, 65504, 1000.5, 0.001, 100000, 3.4e38,
  1.7976931348623157e308, 5e-324, 2.2250738585072014e-308, 1.401298464324817e-45, 1.1754943508222875e-38, 6e-8, 6.1e-5, 0.5, 1, 2,
];

function floatValue(regime: Regime): number {
  switch (regime) {
    case "ints":
      return randInt(-1000, 1000) * (rand() < 0.3 ? 1 : rand() < 0.5 ? 10 : 0.5);
    case "decimals":
      return randInt(-100000, 100000) / 10 ** randInt(0, 5);
    case "uniform":
      return rand();
    case "wide":
      return (rand() < 0.5 ? -1 : 1) * 10 ** (rand() * 40 - 20);
    case "special":
      return pick([NaN, Infinity, -Infinity, -0, 0, rand() * 10, -rand(), 1.5, randInt(-5, 5)]);
    case "tiny":
      return (rand() < 0.5 ? -1 : 1) * 10 ** (rand() * 10 - 48) * (rand() < 0.2 ? 1e-260 : 1);
    case "huge":
      return (rand() < 0.5 ? -1 : 1) * 10 ** (rand() * 30 + 5) * (rand() < 0.1 ? 1e270 : 1);
    case "bits": {
      const b = new Uint32Array(2);
      b[0] = randInt(0, 0xffffffff);
      b[1] = randInt(0, 0xffffffff);
      return rand() < 0.5 ? new Float32Array(b.buffer)[0]! : new Float64Array(b.buffer)[0]!;
    }
    case "edges":
      return (rand() < 0.2 ? -1 : 1) * pick(EDGE_VALUES);
    case "mixed":
      return floatValue(pick(FLOAT_REGIMES.filter((r) => r !== "mixed")));
    case "zeros":
      return pick([0, -0, 0, 1]);
  }
}

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 4294967295],
};

function shapeSize(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

function fillArray(dtype: DType, shape: readonly number[]): NDArray {
  const info = dtypeInfo(dtype);
  const size = shapeSize(shape);
  const data = new info.ctor(size * info.lanes);
  const n = size * info.lanes;
  if (info.kind === "b") {
    for (let i = 0; i < n; i++) data[i] = rand() < 0.5 ? 1 : 0;
  } else if (dtype === "int64" || dtype === "uint64") {
    const [lo, hi] = dtype === "int64" ? [-(2n ** 63n), 2n ** 63n - 1n] : [0n, 2n ** 64n - 1n];
    const small = rand() < 0.5;
    for (let i = 0; i < n; i++) {
      const r = rand();
      (data as BigInt64Array)[i] = r < 0.1 ? lo : r < 0.2 ? hi : small ? BigInt(randInt(-50, 50)) * (lo < 0n ? 1n : 0n) + BigInt(randInt(0, 99)) : randBig(lo, hi);
    }
  } else if (info.kind === "i" || info.kind === "u") {
    const [lo, hi] = INT_RANGE[dtype]!;
    const small = rand() < 0.5;
    for (let i = 0; i < n; i++) {
      const r = rand();
      data[i] = r < 0.1 ? lo : r < 0.2 ? hi : small ? Math.max(lo, Math.min(hi, randInt(-20, 120))) : randInt(lo, hi);
    }
  } else {
    // independent regimes for real and imaginary parts
    const regimes = [pick(FLOAT_REGIMES), pick(FLOAT_REGIMES)];
    for (let i = 0; i < n; i++) {
      const regime = regimes[i % info.lanes]!;
      if (regime === "bits" && (dtype === "float16" || dtype === "bfloat16")) {
        data[i] = randInt(0, 0xffff);
        continue;
      }
      const v = floatValue(regime);
      if (dtype === "float16") data[i] = numberToFloat16Bits(v);
      else if (dtype === "bfloat16") data[i] = numberToBfloat16Bits(v);
      else data[i] = v;
    }
  }
  return new NDArray(data, shape, dtype);
}

const SHAPES: readonly (readonly number[])[] = [
  [], [], [0], [2, 0, 3], [0, 4], [3, 0],
  [1], [2], [3], [5], [7], [10], [13], [25], [60],
  [1, 1], [2, 3], [4, 5], [3, 12], [10, 4], [1, 30],
  [2, 2, 2], [2, 3, 4], [3, 1, 5], [2, 2, 9],
  [2, 2, 2, 2], [1, 2, 3, 4], [2, 3, 1, 5],
  // summarised (> threshold 1000)
  [1001], [2000], [40, 30], [10, 10, 11], [3, 400], [1200, 2], [5, 6, 7, 8], [2, 1001],
];

interface Case {
  dtype: DType;
  shape: number[];
  b64: string;
  opts?: Partial<PrintOptions>;
}

function encode(a: NDArray, opts?: Partial<PrintOptions>): Case {
  const c: Case = { dtype: a.dtype, shape: [...a.shape], b64: Buffer.from(a.bytes()).toString("base64") };
  if (opts) c.opts = opts;
  return c;
}

const OPTION_VARIANTS: readonly Partial<PrintOptions>[] = [
  { precision: 3 },
  { precision: 0 },
  { precision: 12 },
  { precision: 17 },
  { threshold: 10 },
  { threshold: 0 },
  { threshold: 5000 },
  { edgeitems: 1, threshold: 20 },
  { edgeitems: 5 },
  { edgeitems: 0, threshold: 5 },
  { linewidth: 40 },
  { linewidth: 120 },
  { linewidth: 10 },
  { suppress: true },
  { suppress: true, precision: 4 },
  { precision: 2, linewidth: 30, edgeitems: 2, threshold: 30 },
];

function buildCases(): { cases: Case[]; arrays: NDArray[] } {
  const cases: Case[] = [];
  const arrays: NDArray[] = [];
  const add = (a: NDArray, opts?: Partial<PrintOptions>): void => {
    arrays.push(a);
    cases.push(encode(a, opts));
  };
  // every dtype over every shape
  for (const dtype of DTYPES) for (const shape of SHAPES) add(fillArray(dtype, shape));
  // extra random float cases: these are where the formatting rules are subtle
  const floats: DType[] = ["float16", "bfloat16", "float32", "float64", "complex64", "complex128"];
  for (let k = 0; k < 300; k++) {
    const dtype = pick(floats);
    const shape = rand() < 0.15 ? pick(SHAPES) : [randInt(1, 12)].concat(rand() < 0.4 ? [randInt(1, 6)] : []);
    add(fillArray(dtype, shape));
  }
  // print option variants
  for (let k = 0; k < 160; k++) {
    const dtype = pick(DTYPES);
    const shape = pick(SHAPES);
    add(fillArray(dtype, shape), pick(OPTION_VARIANTS));
  }
  // hand-picked corners
  add(array([Math.fround(1e-4), 1], "float32")); // == float32(1e-4): not "< 0.0001" in float32
  add(array([9.99e-5, 1], "float32"));
  add(array([1e6, 1], "float32")); // float32 switches to scientific at 1e6
  add(array([999999, 1], "float32"));
  add(array([1e8, 1], "float64"));
  add(array([99999999.5, 1], "float64"));
  add(array([1000, 1], "float16")); // float16 switches at 1e3
  add(array([999.5, 1], "float16"));
  add(array([1, 1000], "float64")); // ratio exactly 1000: stays positional
  add(array([1, 1000.0001], "float64"));
  add(array([1, 1000.5], "float16"));
  add(array([NaN, NaN], "float64"));
  add(array([Infinity, -Infinity, NaN], "float32"));
  add(array([-0, 0], "float64"));
  add(array(-0, "float32"));
  add(array([{ re: 1, im: 2 }, { re: -0, im: -0 }, { re: NaN, im: Infinity }, { re: 1.5, im: -Infinity }], "complex128"));
  add(array({ re: 1e-10, im: 3 }, "complex64"));
  add(array([0.1, 0.2, 0.3], "float32"));
  add(array([0.1, 0.2, 1e-9], "float32"));
  add(array([2 ** -9, 2 ** -10 * 5, 3 * 2 ** -9], "bfloat16")); // %g ties round half to even
  add(array([123456, 1e6, 1e-5, 1e-40, 3e38], "bfloat16"));
  add(new NDArray(new Uint16Array([0xffc0, 0x7fc1, 0x8000, 0xff80, 0x0001]), [5], "bfloat16")); // -nan, payload nan, -0, -inf, subnormal
  add(new NDArray(new Uint16Array([0xfe00, 0x7c01, 0x8000, 0xfc00, 0x0001, 0x7bff]), [6], "float16"));
  add(array(true, "bool"));
  add(array([true, false], "bool"));
  add(array(Array.from({ length: 30 }, (_, i) => 1.5 ** i), "float64"));
  add(array(Array.from({ length: 1500 }, (_, i) => i % 7 === 0), "bool"));
  add(array(5, "int64"), { threshold: 0 });
  return { cases, arrays };
}

/**
 * Exhaustive and random-bit scalars: every float16 and bfloat16 bit pattern,
 * and random float32 / float64 bit patterns, each as a 0-d array. They ride
 * in the same Python run as the generated cases.
 */
function buildScalarGroups(): { dtype: DType; data: Uint16Array | Float32Array | Float64Array }[] {
  const all16 = new Uint16Array(65536).map((_, i) => i);
  const u32 = new Uint32Array(4000).map(() => randInt(0, 0xffffffff));
  const u64 = new Uint32Array(8000).map(() => randInt(0, 0xffffffff));
  return [
    { dtype: "float16", data: all16 },
    { dtype: "bfloat16", data: all16 },
    { dtype: "float32", data: new Float32Array(u32.buffer) },
    { dtype: "float64", data: new Float64Array(u64.buffer) },
  ];
}

const PY_ORACLE = `
import sys, json, base64
import numpy as np
import ml_dtypes

def dtype_of(name):
    return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)

def build(c):
    return np.frombuffer(base64.b64decode(c["b64"]), dtype=dtype_of(c["dtype"])).reshape(c["shape"])

inp = json.load(sys.stdin)
cases = []
for c in inp["cases"]:
    a = build(c)
    with np.printoptions(**c.get("opts", {})):
        cases.append(repr(a))
scalars = []
for g in inp["scalars"]:
    flat = build(g)
    scalars.append([repr(flat[i:i + 1].reshape(())) for i in range(flat.size)])
print(json.dumps({"cases": cases, "scalars": scalars}))
`;

function describeCase(c: Case, a: NDArray, expected: string, actual: string): string {
  const vals = a.size <= 16 ? ` values=${JSON.stringify(a.toList(), (_k, v) => (typeof v === "bigint" ? `${v}n` : typeof v === "number" && !Number.isFinite(v) ? String(v) : Object.is(v, -0) ? "-0" : v))}` : "";
  return `dtype=${c.dtype} shape=[${c.shape.join(", ")}] opts=${JSON.stringify(c.opts ?? {})}${vals} b64=${c.b64.length <= 200 ? c.b64 : "(long)"}\n--- numpy:\n${expected}\n--- ours:\n${actual}`;
}

// ---------------------------------------------------------------------------

describe("format: numpy repr", function () {
  afterEach(() => resetPrintOptions());

  describe("hand-written expectations", () => {
    const cases: [NDArray, string][] = [
      [array([1, 2, 3], "int64"), "array([1, 2, 3])"],
      [array([1, 2, 3], "int32"), "array([1, 2, 3], dtype=int32)"],
      [array([1, 2.5], "float64"), "array([1. , 2.5])"],
      [array([1, 2], "float64"), "array([1., 2.])"],
      [array(0.1, "float32"), "array(0.1, dtype=float32)"],
      [array([0.1], "float32"), "array([0.1], dtype=float32)"],
      [array([1, -0, NaN, Infinity], "float64"), "array([ 1., -0., nan, inf])"],
      [array([1e-5, 1], "float64"), "array([1.e-05, 1.e+00])"],
      [array([{ re: 1, im: 2 }], "complex128"), "array([1.+2.j])"],
      [array([{ re: 1, im: 2 }, { re: 1.5, im: 2.25 }], "complex64"), "array([1. +2.j  , 1.5+2.25j], dtype=complex64)"],
      [array([true, false], "bool"), "array([ True, False])"],
      [array(true, "bool"), "array(True)"],
      [array([], "float32", [0, 3]), "array([], shape=(0, 3), dtype=float32)"],
      [array([], "float64"), "array([], dtype=float64)"],
      [array([[1, 2], [3, 4]], "int8"), "array([[1, 2],\n       [3, 4]], dtype=int8)"],
      [array([1, 2.5, 1e-5], "bfloat16"), "array([1, 2.5, 1.00136e-05], dtype=bfloat16)"],
      [array([0.1, 0.2], "float16"), "array([0.1, 0.2], dtype=float16)"],
    ];
    for (const [a, want] of cases) it(want.replace(/\n\s*/g, " "), () => assert.equal(formatNDArray(a), want));

    it("summarises large arrays and says their shape", () => {
      const a = array(Array.from({ length: 2000 }, (_, i) => i), "int64");
      assert.equal(formatNDArray(a), "array([   0,    1,    2, ..., 1997, 1998, 1999], shape=(2000,))");
    });

    it("NDArray's toString and inspect use it", () => {
      const a = array([1.5, 2], "float32");
      assert.equal(String(a), "array([1.5, 2. ], dtype=float32)");
    });
  });

  describe("print options", () => {
    it("setPrintOptions changes later formatting and getPrintOptions reports it", () => {
      assert.deepEqual(getPrintOptions(), { precision: 8, threshold: 1000, edgeitems: 3, linewidth: 75, suppress: false });
      setPrintOptions({ precision: 3 });
      assert.equal(getPrintOptions().precision, 3);
      assert.equal(getPrintOptions().threshold, 1000);
      assert.equal(formatNDArray(array([Math.PI, 1], "float64")), "array([3.142, 1.   ])");
      setPrintOptions({ threshold: 4, edgeitems: 1 });
      assert.equal(formatNDArray(array([1, 2, 3, 4, 5], "int64")), "array([1, ..., 5], shape=(5,))");
      resetPrintOptions();
      assert.equal(formatNDArray(array([Math.PI], "float64")), "array([3.14159265])");
    });

    it("getPrintOptions returns a copy", () => {
      const o = getPrintOptions();
      o.precision = 1;
      assert.equal(getPrintOptions().precision, 8);
    });

    it("withPrintOptions and per-call overrides are scoped", () => {
      const a = array([Math.PI], "float64");
      assert.equal(withPrintOptions({ precision: 2 }, () => formatNDArray(a)), "array([3.14])");
      assert.equal(formatNDArray(a, { precision: 1 }), "array([3.1])");
      assert.equal(formatNDArray(a), "array([3.14159265])");
    });

    it("rejects bad options", () => {
      assert.throws(() => setPrintOptions({ precision: -1 }), BridgeInputError);
      assert.throws(() => setPrintOptions({ linewidth: 1.5 }), BridgeInputError);
      assert.throws(() => setPrintOptions({ threshold: NaN }), BridgeInputError);
      assert.throws(() => setPrintOptions({ nope: 1 } as unknown as Partial<PrintOptions>), BridgeInputError);
      assert.deepEqual(getPrintOptions(), { precision: 8, threshold: 1000, edgeitems: 3, linewidth: 75, suppress: false });
    });

    it("threshold Infinity never summarises", () => {
      const a = array(Array.from({ length: 1200 }, (_, i) => i % 10), "int8");
      const s = formatNDArray(a, { threshold: Infinity });
      assert.ok(!s.includes("..."));
      assert.ok(!s.includes("shape="));
    });
  });

  it("formatSummary", () => {
    assert.equal(formatSummary("float32", [2, 3]), "float32[2, 3]");
    assert.equal(formatSummary("int64", []), "int64[]");
    assert.equal(formatSummary("bfloat16", [0]), "bfloat16[0]");
  });

  describe(`against numpy (one Python run, seed ${SEED})`, function () {
    const { cases, arrays } = buildCases();
    const scalarGroups = buildScalarGroups();
    let oracle: { cases: string[]; scalars: string[][] };

    before(async function () {
      this.timeout(300_000);
      const scalars = scalarGroups.map((g) => encode(new NDArray(g.data, [g.data.length], g.dtype)));
      oracle = await runPython(PY_ORACLE, { cases, scalars });
      assert.equal(oracle.cases.length, cases.length);
    });

    it(`matches repr on ${cases.length} generated arrays (every dtype and shape, print option variants)`, () => {
      const failures: string[] = [];
      for (let k = 0; k < cases.length; k++) {
        const c = cases[k]!;
        const a = arrays[k]!;
        let actual: string;
        try {
          actual = formatNDArray(a, c.opts);
        } catch (e) {
          actual = `THREW ${(e as Error).stack}`;
        }
        if (actual !== oracle.cases[k]) failures.push(`#${k} ${describeCase(c, a, oracle.cases[k]!, actual)}`);
      }
      assert.equal(failures.length, 0, `${failures.length} of ${cases.length} reprs differ from numpy; first ones:\n\n${failures.slice(0, 4).join("\n\n")}`);
    });

    for (const [gi, g] of scalarGroups.entries()) {
      const what = g.dtype === "float16" || g.dtype === "bfloat16" ? "every" : `${g.data.length} random`;
      it(`matches repr on ${what} ${g.dtype} bit pattern${what === "every" ? "" : "s"} as 0-d arrays`, () => {
        const want = oracle.scalars[gi]!;
        assert.equal(want.length, g.data.length);
        const failures: string[] = [];
        for (let i = 0; i < g.data.length; i++) {
          const a = new NDArray(g.data.slice(i, i + 1), [], g.dtype);
          const got = formatNDArray(a);
          if (got !== want[i]) failures.push(`element ${i} (${g.dtype === "float16" || g.dtype === "bfloat16" ? `bits 0x${(g.data[i] as number).toString(16)}` : String(g.data[i])}): numpy ${want[i]} ours ${got}`);
        }
        assert.equal(failures.length, 0, `${failures.length} differ; first ones:\n${failures.slice(0, 8).join("\n")}`);
      });
    }
  });
});
