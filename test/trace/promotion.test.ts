/**
 * Type promotion against JAX itself: the whole dtype × weak × dtype × weak
 * matrix compared with `jax._src.dtypes.result_type` in both x64 modes, then
 * generated programs that mix arrays and JS scalars compared with what jnp
 * computes (dtype and bits).
 */
import assert from "node:assert/strict";
import { DTYPES, type DType } from "../../src/values/dtype.js";
import { canonicalize, resultType, scalarType } from "../../src/trace/dtypes.js";
import { jnp } from "../../src/trace/lib/index.js";
import type { Tracer } from "../../src/trace/tracer.js";
import { traceFlat } from "../../src/trace/trace.js";
import { Oracle, pick, randomArray, rng } from "./support/oracle.js";

const oracle = new Oracle();
after(() => oracle.close());

const PY_MATRIX = `
import itertools
from jax._src import dtypes as D
from jax._src.lax import lax as L
names = ${JSON.stringify(DTYPES)}
out = {}
for a, b in itertools.product(names, names):
    for wa, wb in itertools.product([False, True], [False, True]):
        da, db = D.canonicalize_dtype(jnp.dtype(a)), D.canonicalize_dtype(jnp.dtype(b))
        xa = L._convert_element_type(jnp.zeros((), da), da, weak_type=wa)
        xb = L._convert_element_type(jnp.zeros((), db), db, weak_type=wb)
        try:
            d, w = D.result_type(xa, xb, return_weak_type_flag=True)
            out[f"{a},{wa},{b},{wb}"] = [str(d), bool(w), str(xa.dtype), bool(xa.weak_type), str(xb.dtype), bool(xb.weak_type)]
        except Exception as e:
            out[f"{a},{wa},{b},{wb}"] = ["error", type(e).__name__, str(xa.dtype), bool(xa.weak_type), str(xb.dtype), bool(xb.weak_type)]
result = out
`;

for (const x64 of [false, true]) {
  describe(`type promotion matrix (x64=${x64})`, () => {
    it("resultType equals jax's result_type for every dtype pair, weak and strong", async () => {
      const table = await oracle.exec<Record<string, [string, boolean | string, string, boolean, string, boolean]>>(x64, PY_MATRIX);
      let checked = 0;
      const failures: string[] = [];
      for (const [key, [d, w, da, wa, db, wb]] of Object.entries(table)) {
        // JAX canonicalises the inputs first (x32 mode narrows 64-bit types); compare on what it actually built.
        const a = { dtype: da as DType, weak: wa };
        const b = { dtype: db as DType, weak: wb };
        let ours: string;
        try {
          const r = resultType([a, b], x64);
          ours = `${r.dtype},${r.weak}`;
        } catch {
          ours = "error";
        }
        const theirs = d === "error" ? "error" : `${d},${w}`;
        if (ours !== theirs) failures.push(`${key} (built ${da}${wa ? "*" : ""}, ${db}${wb ? "*" : ""}): ours ${ours}, jax ${theirs}`);
        checked++;
      }
      assert.equal(checked, DTYPES.length * DTYPES.length * 4);
      assert.deepEqual(failures, []);
    });
  });
}

describe("JS scalars are Python scalars", () => {
  it("safe integers are weak ints, other numbers weak floats, booleans strong bools", () => {
    assert.deepEqual(scalarType(1, false), { dtype: "int32", weak: true });
    assert.deepEqual(scalarType(1, true), { dtype: "int64", weak: true });
    assert.deepEqual(scalarType(1.5, false), { dtype: "float32", weak: true });
    assert.deepEqual(scalarType(NaN, true), { dtype: "float64", weak: true });
    assert.deepEqual(scalarType(true, true), { dtype: "bool", weak: false });
    assert.deepEqual(scalarType(2n ** 40n, true), { dtype: "int64", weak: true });
    assert.equal(canonicalize("float64", false), "float32");
  });
});

// --- generated end-to-end cases -------------------------------------------------------

const NUMERIC: DType[] = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "float16", "bfloat16", "float32", "float64"];
const SCALARS: { ts: number | boolean; py: string }[] = [
  { ts: 2, py: "2" },
  { ts: -3, py: "-3" },
  { ts: 0.5, py: "0.5" },
  { ts: 1.25, py: "1.25" },
  { ts: true, py: "True" },
];
type Op = { ts: (a: jnp.ArrayLike, b: jnp.ArrayLike) => Tracer; py: string; noBool?: boolean; noUnsignedNeg?: boolean };
const OPS: Op[] = [
  { ts: jnp.add, py: "jnp.add" },
  { ts: jnp.multiply, py: "jnp.multiply" },
  { ts: jnp.subtract, py: "jnp.subtract", noBool: true },
  { ts: jnp.maximum, py: "jnp.maximum" },
  { ts: jnp.minimum, py: "jnp.minimum" },
  { ts: jnp.divide, py: "jnp.divide" },
  { ts: jnp.greater, py: "jnp.greater" },
  { ts: jnp.equal, py: "jnp.equal" },
  { ts: (a, b) => jnp.where(true, a, b), py: "(lambda a, b: jnp.where(True, a, b))" },
];

for (const x64 of [false, true]) {
  describe(`promotion in programs (x64=${x64})`, () => {
    const r = rng(x64 ? 1234 : 4321);
    const dtypes = NUMERIC.filter((d) => x64 || canonicalize(d, false) === d);
    // 60 generated binary ops: array⊕array (different dtypes, broadcast shapes) and array⊕scalar.
    const cases: { desc: string; build: (xs: Tracer[]) => Tracer; py: string; args: ReturnType<typeof randomArray>[] }[] = [];
    for (let i = 0; i < 60; i++) {
      const op = pick(r, OPS);
      const da = pick(r, dtypes);
      const withScalar = r() < 0.45;
      const shapeA = pick(r, [[], [3], [2, 3], [1, 3]]);
      const shapeB = pick(r, [[], [3], [2, 1], [1]]);
      const a = randomArray(r, da, shapeA, { lo: 0, hi: 9, positive: true });
      if (withScalar) {
        let s = pick(r, SCALARS);
        if (op.noBool && da === "bool" && s.ts === true) s = SCALARS[0]!;
        const swap = r() < 0.5;
        if ((op.py === "jnp.subtract" && da === "bool" && typeof s.ts === "boolean") || (da.startsWith("uint") && typeof s.ts === "number" && s.ts < 0)) continue;
        cases.push({
          desc: `${op.py}(${swap ? `${s.py}, ${da}` : `${da}, ${s.py}`})`,
          build: ([x]) => (swap ? op.ts(s.ts, x!) : op.ts(x!, s.ts)),
          py: swap ? `${op.py}(${s.py}, x)` : `${op.py}(x, ${s.py})`,
          args: [a],
        });
      } else {
        const db = pick(r, dtypes);
        if (op.noBool && da === "bool" && db === "bool") continue;
        const b = randomArray(r, db, shapeB, { lo: 0, hi: 9, positive: true });
        cases.push({ desc: `${op.py}(${da}${JSON.stringify(shapeA)}, ${db}${JSON.stringify(shapeB)})`, build: ([x, y]) => op.ts(x!, y!), py: `${op.py}(x, y)`, args: [a, b] });
      }
    }
    it(`${cases.length} generated mixed-dtype ops give JAX's dtypes and bits`, async function () {
      this.timeout(240000);
      // One program per 15 cases keeps the oracle's compiles few.
      for (let start = 0; start < cases.length; start += 15) {
        const batch = cases.slice(start, start + 15);
        const args = batch.flatMap((c) => c.args);
        let k = 0;
        const slices = batch.map((c) => {
          const s = [k, k + c.args.length] as const;
          k += c.args.length;
          return s;
        });
        const py = `lambda *a: (${batch
          .map((c, i) => {
            const [s] = slices[i]!;
            return `(lambda x, y=None: ${c.py})(*a[${s}:${slices[i]![1]}])`;
          })
          .join(", ")},)`;
        const res = await oracle.compare((...xs) => batch.map((c, i) => c.build(xs.slice(slices[i]![0], slices[i]![1]))), args, py, { x64 });
        assert.equal(res.mismatch, null, `${res.mismatch}\ncases: ${batch.map((c, i) => `${i}: ${c.desc}`).join("; ")}`);
      }
    });
  });
}

describe("overflowing scalars", () => {
  it("a JS integer that does not fit the array's dtype is an OverflowError, as in JAX", async () => {
    assert.throws(() => traceFlat((x) => jnp.add(x, 300), [{ dtype: "int8", shape: [2] }], { x64: false }), /300 too large to convert to int8/);
    assert.throws(() => traceFlat((x) => jnp.add(x, -1), [{ dtype: "uint8", shape: [2] }], { x64: false }), /-1 too large to convert to uint8/);
  });
});
