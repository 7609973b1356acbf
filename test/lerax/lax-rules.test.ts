/**
 * filterCond, switch and filterScan follow lax's type rules exactly, checked
 * against lerax 0.0.6's own `utils.py` (shared/oracle/lerax_utils.py, loaded
 * by path) and against `jax.lax.cond` / `lax.switch` / `lax.scan` directly.
 * Generated cases mix strong and weakly typed leaves (`jnp.full(shape, 2)`
 * is a weak int, as in JAX), dtypes, shapes, nested output trees and
 * predicates of every kind (bool, int, uint, float, complex, non-scalar, JS
 * values). For each case: the same accept/refuse decision as both Python
 * oracles; when accepted, the same dtype, shape and weak type for every
 * output leaf and the same bits; when refused, our error names the same key
 * paths JAX's names (`at path ['a'][1]`, `carry component carry['w']`).
 */
import assert from "node:assert/strict";
import type { DType } from "../../src/values/dtype.js";
import type { NDArray } from "../../src/values/ndarray.js";
import { filterCond, filterScan } from "../../src/lerax/filter.js";
import { switchFlat } from "../../src/trace/lib/control.js";
import { jnp } from "../../src/trace/lib/index.js";
import { traceFlat } from "../../src/trace/trace.js";
import { Tracer } from "../../src/trace/tracer.js";
import { flatten } from "../../src/values/tree.js";
import { leraxUtils } from "../support/lerax-oracle.js";
import { Oracle, pick, randInt, randomArray, rng } from "../trace/support/oracle.js";

type Rand = () => number;
interface Spec {
  dtype: DType;
  shape: number[];
}
interface LeafType {
  dtype: string;
  shape: number[];
  weak: boolean;
}
/** One array leaf of a branch or body output, written twice: for jnp on tracers and as Python source. */
interface Leaf {
  ts: (a: readonly Tracer[]) => Tracer;
  py: string;
}
type Tree = { kind: "leaf"; leaf: Leaf } | { kind: "static"; value: string | number } | { kind: "dict"; entries: [string, Tree][] } | { kind: "list"; items: Tree[] };

const tracers = (tree: unknown): Tracer[] => flatten(tree).leaves.filter((l): l is Tracer => l instanceof Tracer);
const pyShape = (s: readonly number[]) => `(${s.map((d) => `${d},`).join("")})`;
const kindOf = (d: DType) => (d === "bool" ? "b" : d.startsWith("complex") ? "c" : d.startsWith("uint") ? "u" : d.startsWith("int") ? "i" : "f");

/** The arrays a case's functions read, created on demand by spec. */
class Pool {
  readonly arrays: NDArray[] = [];
  readonly specs: Spec[] = [];
  constructor(readonly r: Rand) {}
  need(spec: Spec): number {
    const hit = this.specs.findIndex((s) => s.dtype === spec.dtype && s.shape.join() === spec.shape.join());
    if (hit >= 0 && this.r() < 0.7) return hit;
    this.specs.push(spec);
    this.arrays.push(randomArray(this.r, spec.dtype, spec.shape, { lo: -3, hi: 3 }));
    return this.arrays.length - 1;
  }
}

/** A strongly typed leaf of exactly `spec`: an argument, maybe through a dtype-preserving op. */
function strong(r: Rand, pool: Pool, spec: Spec): Leaf {
  const i = pool.need(spec);
  const ops: Record<string, [string, (x: Tracer) => Tracer][]> = {
    f: [["negative", jnp.negative], ["abs", jnp.abs], ["tanh", jnp.tanh]],
    i: [["negative", jnp.negative], ["abs", jnp.abs]],
    u: [["abs", jnp.abs]],
    b: [["logical_not", jnp.logicalNot]],
    c: [["negative", jnp.negative]],
  };
  if (r() < 0.3) return { ts: (a) => a[i]!, py: `a[${i}]` };
  const [py, fn] = pick(r, ops[kindOf(spec.dtype)]!);
  return { ts: (a) => fn(a[i]!), py: `jnp.${py}(a[${i}])` };
}

/** A weakly typed leaf: `jnp.full(shape, v)` with a JS/Python int (weak int) or a non-integral number (weak float). */
function weak(r: Rand, kind: "i" | "f", shape: number[]): Leaf {
  const v = kind === "i" ? pick(r, [2, -3, 7]) : pick(r, [1.5, -0.25, 2.75]);
  return { ts: () => jnp.full(shape, v), py: `jnp.full(${pyShape(shape)}, ${v})` };
}

function tsTree(t: Tree, a: readonly Tracer[]): unknown {
  switch (t.kind) {
    case "leaf":
      return t.leaf.ts(a);
    case "static":
      return t.value;
    case "dict":
      return Object.fromEntries(t.entries.map(([k, c]) => [k, tsTree(c, a)]));
    case "list":
      return t.items.map((c) => tsTree(c, a));
  }
}

function pyTree(t: Tree): string {
  switch (t.kind) {
    case "leaf":
      return t.leaf.py;
    case "static":
      return JSON.stringify(t.value);
    case "dict":
      return `{${t.entries.map(([k, c]) => `${JSON.stringify(k)}: ${pyTree(c)}`).join(", ")}}`;
    case "list":
      return `[${t.items.map(pyTree).join(", ")}]`;
  }
}

const KEYS = ["a", "b", "cfg", "h", "params", "w"];

/** Nest the pairs of leaves (and some statics, equal on both sides) into two trees of one random shape. */
function nest(r: Rand, pairs: [Leaf, Leaf][], statics = true): [Tree, Tree] {
  if (pairs.length === 1 && r() < 0.3) return [{ kind: "leaf", leaf: pairs[0]![0] }, { kind: "leaf", leaf: pairs[0]![1] }];
  const items: [Tree, Tree][] = pairs.map(([t, f]) => [{ kind: "leaf", leaf: t }, { kind: "leaf", leaf: f }]);
  if (statics && r() < 0.4) {
    const s: Tree = { kind: "static", value: pick(r, ["relu", 3, "tag"]) };
    items.splice(randInt(r, 0, items.length), 0, [s, s]);
  }
  const group = (xs: [Tree, Tree][], depth: number): [Tree, Tree] => {
    if (xs.length === 1 && (depth > 1 || r() < 0.5)) return xs[0]!;
    const cut = xs.length > 2 && depth < 2 && r() < 0.5 ? randInt(r, 1, xs.length - 1) : xs.length;
    const parts = cut < xs.length ? [group(xs.slice(0, cut), depth + 1), group(xs.slice(cut), depth + 1)] : xs;
    if (r() < 0.5) return [{ kind: "list", items: parts.map((p) => p[0]) }, { kind: "list", items: parts.map((p) => p[1]) }];
    const keys = [...KEYS].sort(() => r() - 0.5).slice(0, parts.length);
    while (keys.length < parts.length) keys.push(`k${keys.length}`);
    return [{ kind: "dict", entries: parts.map((p, i) => [keys[i]!, p[0]]) }, { kind: "dict", entries: parts.map((p, i) => [keys[i]!, p[1]]) }];
  };
  return group(items, 0);
}

const SHAPES = [[], [2], [2, 3]];

/**
 * A pair of leaves for the two branches. Accepting kinds: equal strong
 * types, one side weak of the same dtype, both weak of one kind. Refusing
 * kinds (lax.cond raises TypeError): a weak int against a float, a weak
 * float against a narrower float, strong dtypes or shapes that differ, weak
 * leaves of different kinds.
 */
function leafPair(r: Rand, pool: Pool, x64: boolean, refuse: boolean): [Leaf, Leaf] {
  const dtypes: DType[] = x64 ? ["float32", "float64", "int32", "int64", "bool", "uint8", "float16", "complex128"] : ["float32", "int32", "bool", "uint8", "float16", "bfloat16", "complex64"];
  const defF: DType = x64 ? "float64" : "float32";
  const defI: DType = x64 ? "int64" : "int32";
  const shape = [...pick(r, SHAPES)];
  const flip = (p: [Leaf, Leaf]): [Leaf, Leaf] => (r() < 0.5 ? p : [p[1], p[0]]);
  if (!refuse) {
    const k = pick(r, ["strong", "strong", "weakSame", "bothWeak"] as const);
    if (k === "strong") {
      const spec = { dtype: pick(r, dtypes), shape };
      return [strong(r, pool, spec), strong(r, pool, spec)];
    }
    if (k === "weakSame") {
      const kind = pick(r, ["i", "f"] as const);
      return flip([weak(r, kind, shape), strong(r, pool, { dtype: kind === "i" ? defI : defF, shape })]);
    }
    const kind = pick(r, ["i", "f"] as const);
    return [weak(r, kind, shape), weak(r, kind, shape)];
  }
  const k = pick(r, ["weakIntVsFloat", "weakFloatVsNarrow", "dtype", "shape", "weakKinds"] as const);
  switch (k) {
    case "weakIntVsFloat":
      return flip([weak(r, "i", shape), strong(r, pool, { dtype: pick(r, ["float32", "float16", defF] as DType[]), shape })]);
    case "weakFloatVsNarrow":
      return flip([weak(r, "f", shape), strong(r, pool, { dtype: pick(r, (x64 ? ["float16", "float32"] : ["float16", "bfloat16"]) as DType[]), shape })]);
    case "dtype": {
      const [d1, d2] = [...dtypes].sort(() => r() - 0.5) as [DType, DType];
      return [strong(r, pool, { dtype: d1, shape }), strong(r, pool, { dtype: d2, shape })];
    }
    case "shape": {
      const dtype = pick(r, dtypes);
      return [strong(r, pool, { dtype, shape: [2] }), strong(r, pool, { dtype, shape: pick(r, [[3], [], [2, 1]]) })];
    }
    case "weakKinds":
      return flip([weak(r, "i", shape), weak(r, "f", shape)]);
  }
}

type Pred = { kind: "js"; value: boolean | number; py: string } | { kind: "array"; spec: Spec };

function randomPred(r: Rand, x64: boolean): Pred {
  const u = r();
  if (u < 0.3) {
    const value = pick(r, [true, false, 0, 3, 0.5]);
    return { kind: "js", value, py: typeof value === "boolean" ? (value ? "True" : "False") : String(value) };
  }
  const dtypes: DType[] = x64 ? ["bool", "bool", "int32", "int64", "uint8", "float64", "float16", "complex128", "complex64"] : ["bool", "bool", "int32", "uint8", "float32", "bfloat16", "complex64"];
  return { kind: "array", spec: { dtype: pick(r, dtypes), shape: r() < 0.12 ? [pick(r, [1, 2])] : [] } };
}

type Decision = { ok: true; types: LeafType[] } | { ok: false; type: string; message: string };
interface PyDecisions {
  lerax: Decision;
  lax: Decision;
}

/** Python that decides with both oracles under eqx.filter_eval_shape (types with weak_type, or the exception). */
const PY_RUN = `import equinox as eqx
def run(f, *xs):
    try:
        out = eqx.filter_eval_shape(f, *xs)
    except Exception as e:
        return {"ok": False, "type": type(e).__name__, "message": str(e)}
    return {"ok": True, "types": [{"dtype": str(l.dtype), "shape": list(l.shape), "weak": bool(l.weak_type)} for l in jax.tree.leaves(out) if isinstance(l, jax.ShapeDtypeStruct)]}
def arrays_of(f):
    return lambda *xs: eqx.filter(f(*xs), eqx.is_array)
`;

/** Ours: trace `fn`; the output leaves' types (weak included), or the error. */
function ours(fn: (...a: Tracer[]) => unknown, specs: readonly Spec[], x64: boolean): Decision {
  let types: LeafType[] = [];
  try {
    traceFlat(
      (...a) => {
        const outs = tracers(fn(...a));
        types = outs.map((t) => ({ dtype: t.dtype, shape: [...t.shape], weak: t.weak }));
        return outs;
      },
      specs,
      { x64 },
    );
  } catch (e) {
    return { ok: false, type: (e as Error).name, message: (e as Error).message };
  }
  return { ok: true, types };
}

/** The key paths a type error names: JAX's `at path P has type` / `carry component NAME P has type`. */
function namedPaths(message: string): string[] {
  const cond = [...message.matchAll(/ at path (\S+) has type/g)].map((m) => m[1]!);
  const carry = [...message.matchAll(/input carry component [A-Za-z_]\w*(\S*) has type/g)].map((m) => m[1]!);
  return [...cond, ...carry];
}

const show = (d: Decision) => (d.ok ? `accepts: ${d.types.map((t) => `${t.weak ? "~" : ""}${t.dtype}[${t.shape}]`).join(" ")}` : `refuses: ${d.type}: ${d.message.split("\n").filter(Boolean).slice(0, 3).join(" | ")}`);

/** null when ours agrees with both Python decisions (and they with each other). */
function agree(mine: Decision, py: PyDecisions): string | null {
  if (py.lerax.ok !== py.lax.ok) return `the oracles disagree: lerax ${show(py.lerax)}; lax ${show(py.lax)}`;
  if (mine.ok !== py.lerax.ok) return `ours ${show(mine)}; lerax ${show(py.lerax)}`;
  if (mine.ok && py.lerax.ok && py.lax.ok) {
    if (JSON.stringify(mine.types) !== JSON.stringify(py.lerax.types)) return `types: ours ${show(mine)}; lerax ${show(py.lerax)}`;
    if (JSON.stringify(mine.types) !== JSON.stringify(py.lax.types)) return `types: ours ${show(mine)}; lax ${show(py.lax)}`;
  }
  if (!mine.ok && !py.lerax.ok) {
    const want = namedPaths(py.lax.ok ? py.lerax.message : py.lax.message);
    const got = namedPaths(mine.message);
    if (JSON.stringify(want) !== JSON.stringify(got)) return `paths: ours name ${JSON.stringify(got)}, JAX ${JSON.stringify(want)}\n  ours: ${mine.message}\n  JAX: ${py.lax.ok ? "" : py.lax.message}`;
  }
  return null;
}

interface Tally {
  accepted: number;
  refused: number;
  [kind: string]: number;
}

/**
 * Judge one case: a disagreement with the oracles is a failure; a refusal
 * counts (and whether ours named key paths); an acceptance counts (and
 * whether any output is weak) and its bits are compared by `bits`.
 */
async function judge(mine: Decision, py: PyDecisions, where: string, failures: string[], seen: Tally, bits: () => Promise<{ mismatch: string | null }>): Promise<boolean> {
  const why = agree(mine, py);
  if (why) {
    failures.push(`${where}\n  ${why}`);
    return false;
  }
  if (!mine.ok) {
    seen.refused++;
    if ("paths" in seen && namedPaths(mine.message).some((p) => p !== "")) seen.paths!++;
    return false;
  }
  seen.accepted++;
  if ("weakOut" in seen && mine.types.some((t) => t.weak)) seen.weakOut!++;
  const res = await bits();
  if (res.mismatch) failures.push(`${where}\n  bits: ${res.mismatch}`);
  return true;
}

const lerax = leraxUtils;
const suite = "path" in lerax ? describe : describe.skip;
const title = "lax's type rules, against lerax 0.0.6 and jax.lax" + ("path" in lerax ? "" : ` (skipped: ${lerax.skipReason})`);

suite(title, function () {
  this.timeout(900_000);
  const oracle = new Oracle({ leraxUtils: "path" in lerax ? lerax.path : undefined });
  after(() => oracle.close());

  for (const x64 of [false, true]) {
    it(`filterCond: 60 generated cases decide, type (weak types included) and compute as lerax_utils.filter_cond and lax.cond do (x64=${x64})`, async () => {
      const r = rng(x64 ? 1301 : 1302);
      const failures: string[] = [];
      const seen = { accepted: 0, refused: 0, weakOut: 0, complexPred: 0, paths: 0 };
      for (let i = 0; i < 60; i++) {
        const pool = new Pool(r);
        const refuse = r() < 0.45;
        const n = randInt(r, 1, 4);
        const bad = refuse ? randInt(r, 0, n - 1) : -1;
        const pairs = Array.from({ length: n }, (_, k) => leafPair(r, pool, x64, k === bad));
        const [tT, fT] = nest(r, pairs);
        const pred = r() < 0.15 && !refuse ? ({ kind: "array", spec: { dtype: x64 ? "complex128" : "complex64", shape: [] } } as Pred) : randomPred(r, x64);
        const nArgs = pool.arrays.length;
        let predIndex = -1;
        if (pred.kind === "array") {
          predIndex = pool.arrays.length;
          pool.arrays.push(randomArray(r, pred.spec.dtype, pred.spec.shape, { lo: -1, hi: 1 }));
          pool.specs.push(pred.spec);
          if (pred.spec.dtype.startsWith("complex")) seen.complexPred++;
        }
        const fn = (...z: Tracer[]) => {
          const p = pred.kind === "js" ? pred.value : z[predIndex]!;
          return filterCond(p, (...a: Tracer[]) => tsTree(tT, a), (...a: Tracer[]) => tsTree(fT, a), ...z.slice(0, nArgs));
        };
        const predPy = pred.kind === "js" ? pred.py : `z[${predIndex}]`;
        const tf = `lambda *a: ${pyTree(tT)}`;
        const ff = `lambda *a: ${pyTree(fT)}`;
        const mine = ours(fn, pool.specs, x64);
        const py = await oracle.exec<PyDecisions>(
          x64,
          `${PY_RUN}tf = ${tf}
ff = ${ff}
z = [jnp.asarray(x) for x in args]
result = {"lerax": run(lambda *z: lerax_utils.filter_cond(${predPy}, tf, ff, *z[:${nArgs}]), *z), "lax": run(lambda *z: lax.cond(${predPy}, arrays_of(tf), arrays_of(ff), *z[:${nArgs}]), *z)}`,
          pool.arrays,
        );
        const where = `case ${i} (pred ${pred.kind === "js" ? pred.py : `${pred.spec.dtype}[${pred.spec.shape}]`})\n  true:  ${tf}\n  false: ${ff}`;
        await judge(mine, py, where, failures, seen, () => oracle.compare((...z) => tracers(fn(...z)), pool.arrays, `lambda *z: lerax_utils.filter_cond(${predPy}, ${tf}, ${ff}, *z[:${nArgs}])`, { x64, filterJit: true }));
      }
      assert.deepEqual(failures, []);
      for (const [k, v] of Object.entries(seen)) assert.ok(v >= 2, `the generator made only ${v} cases of kind ${k}: ${JSON.stringify(seen)}`);
    });

    it(`switch: 40 generated cases decide, type and compute as lax.switch does, index rules included (x64=${x64})`, async () => {
      const r = rng(x64 ? 1401 : 1402);
      const failures: string[] = [];
      const seen = { accepted: 0, refused: 0, oneBranch: 0 };
      for (let i = 0; i < 40; i++) {
        const pool = new Pool(r);
        const nb = randInt(r, 1, 3);
        const nOut = randInt(r, 1, 3);
        const refuse = nb > 1 && r() < 0.35;
        const bad = refuse ? randInt(r, 0, nOut - 1) : -1;
        const badBranch = randInt(r, 1, nb - 1);
        // Branch 0 and branch b share a pair per output; the other branches copy branch 0's types.
        const cols = Array.from({ length: nOut }, (_, k) => leafPair(r, pool, x64, k === bad));
        const branches: Leaf[][] = Array.from({ length: nb }, (_, b) => cols.map((c) => (b === 0 ? c[0] : b === badBranch ? c[1] : c[0])));
        const u = r();
        let index: { js: number | boolean; py: string } | { spec: Spec };
        if (u < 0.25) {
          const v = pick(r, [0, 1, 2, 5, -1, 0.5, true]);
          index = { js: v, py: typeof v === "boolean" ? "True" : String(v) };
        } else {
          const dtypes: DType[] = x64 ? ["int32", "int64", "uint8", "int8", "bool", "float64"] : ["int32", "int32", "uint8", "int8", "bool", "float32"];
          index = { spec: { dtype: pick(r, dtypes), shape: r() < 0.1 ? [1] : [] } };
        }
        const nArgs = pool.arrays.length;
        let indexAt = -1;
        if ("spec" in index) {
          indexAt = pool.arrays.length;
          pool.arrays.push(randomArray(r, index.spec.dtype, index.spec.shape, { lo: -1, hi: 3 }));
          pool.specs.push(index.spec);
        }
        if (nb === 1) seen.oneBranch++;
        const idxTs = (z: Tracer[]) => ("js" in index ? index.js : z[indexAt]!);
        const fn = (...z: Tracer[]) => switchFlat(idxTs(z), branches.map((b) => (...a: Tracer[]) => b.map((l) => l.ts(a))), z.slice(0, nArgs));
        const idxPy = "js" in index ? index.py : `z[${indexAt}]`;
        const bsPy = `[${branches.map((b) => `lambda *a: [${b.map((l) => l.py).join(", ")}]`).join(", ")}]`;
        const mine = ours(fn, pool.specs, x64);
        const py = await oracle.exec<{ lax: Decision }>(
          x64,
          `${PY_RUN}z = [jnp.asarray(x) for x in args]
result = {"lax": run(lambda *z: lax.switch(${idxPy}, ${bsPy}, *z[:${nArgs}]), *z)}`,
          pool.arrays,
        );
        const where = `case ${i} (index ${"js" in index ? index.py : `${index.spec.dtype}[${index.spec.shape}]`}): ${bsPy}`;
        await judge(mine, { lerax: py.lax, lax: py.lax }, where, failures, seen, () => oracle.compare((...z) => fn(...z), pool.arrays, `lambda *z: lax.switch(${idxPy}, ${bsPy}, *z[:${nArgs}])`, { x64 }));
      }
      assert.deepEqual(failures, []);
      for (const [k, v] of Object.entries(seen)) assert.ok(v >= 2, `the generator made only ${v} cases of kind ${k}: ${JSON.stringify(seen)}`);
    });

    it(`filterScan: 40 generated carries decide, type and compute as lerax_utils.filter_scan and lax.scan do (x64=${x64})`, async () => {
      const r = rng(x64 ? 1501 : 1502);
      const failures: string[] = [];
      const seen = { accepted: 0, refused: 0, promoted: 0, weakOut: 0, paths: 0 };
      const defF: DType = x64 ? "float64" : "float32";
      const defI: DType = x64 ? "int64" : "int32";
      const T = 3;
      for (let i = 0; i < 40; i++) {
        const pool = new Pool(r);
        const n = randInt(r, 1, 3);
        // Each carry leaf: an init (strong argument or weak jnp.full) and what the body makes of it.
        const pairs: [Leaf, Leaf][] = [];
        const xsUsed: Spec[] = [];
        for (let k = 0; k < n; k++) {
          const shape = [...pick(r, SHAPES)];
          const weakInit = r() < 0.4;
          const kind = pick(r, ["i", "f"] as const);
          const dtype: DType = weakInit ? (kind === "i" ? defI : defF) : pick(r, ["float32", defF, "int32", defI, "float16", "bool"] as DType[]);
          const init = weakInit ? weak(r, kind, shape) : strong(r, pool, { dtype, shape });
          const body = pick(r, ["keep", "op", "plusX", "weakInt", "weakFloat", "astype", "reshape"] as const);
          let out: Leaf;
          switch (body) {
            case "keep":
              out = { ts: (a) => a[k]!, py: `c[${k}]` };
              break;
            case "op":
              out = dtype === "bool" ? { ts: (a) => jnp.logicalNot(a[k]!), py: `jnp.logical_not(c[${k}])` } : { ts: (a) => jnp.negative(a[k]!), py: `jnp.negative(c[${k}])` };
              break;
            case "plusX": {
              const xd = pick(r, [dtype === "bool" ? "int32" : dtype, defF, "int32"] as DType[]);
              const xi = xsUsed.length;
              xsUsed.push({ dtype: xd, shape: [T, ...shape] });
              out = { ts: (a) => jnp.add(a[k]!, a[n + xi]!), py: `jnp.add(c[${k}], x[${xi}])` };
              break;
            }
            case "weakInt":
            case "weakFloat": {
              const w = weak(r, body === "weakInt" ? "i" : "f", shape);
              out = { ts: () => w.ts([]), py: w.py };
              break;
            }
            case "astype": {
              const to = pick(r, ["float32", "int32", defF, "float16"] as DType[]);
              out = { ts: (a) => jnp.astype(a[k]!, to), py: `jnp.astype(c[${k}], ${JSON.stringify(to)})` };
              break;
            }
            case "reshape":
              out = { ts: (a) => jnp.zeros(shape.length ? [...shape, 1] : [1], a[k]!.dtype), py: `jnp.zeros(${pyShape(shape.length ? [...shape, 1] : [1])}, c[${k}].dtype)` };
              break;
          }
          pairs.push([init, out]);
        }
        const xsIdx = xsUsed.map((s) => pool.need(s));
        // The carry is a nested tree (no statics: lax.scan takes arrays only); the body reads leaf k as c[k] / a[k].
        const [initT, outT] = nest(r, pairs, false);
        const order = pytreePositions(initT);
        const fn = (...z: Tracer[]) => {
          const init = tsTree(initT, z);
          const xs = xsIdx.map((j) => z[j]!);
          const [carry] = filterScan(
            (cTree: unknown, x: Tracer[]) => {
              const c = tracers(cTree);
              return [tsTree(outT, [...order.map((j) => c[j]!), ...x]), null] as const;
            },
            init,
            xs,
            { length: T },
          );
          return carry;
        };
        const body = `lambda cTree, x: (lambda c: (${pyTree(outT)}, None))([jax.tree.leaves(cTree)[j] for j in ${JSON.stringify(order)}])`;
        const initPy = `(lambda a: ${pyTree(initT)})`;
        const mine = ours(fn, pool.specs, x64);
        const xsPy = `[${xsIdx.map((j) => `z[${j}]`).join(", ")}]`;
        const py = await oracle.exec<PyDecisions>(
          x64,
          `${PY_RUN}body = ${body}
init = ${initPy}
z = [jnp.asarray(x) for x in args]
result = {"lerax": run(lambda *z: lerax_utils.filter_scan(body, init(z), ${xsPy}, length=${T})[0], *z), "lax": run(lambda *z: lax.scan(body, init(z), ${xsPy}, length=${T})[0], *z)}`,
          pool.arrays,
        );
        const where = `case ${i}\n  init: ${pyTree(initT)}\n  body: ${body}`;
        const accepted = await judge(mine, py, where, failures, seen, () => oracle.compare((...z) => tracers(fn(...z)), pool.arrays, `lambda *z: lerax_utils.filter_scan(${body}, ${initPy}(z), ${xsPy}, length=${T})[0]`, { x64, filterJit: true }));
        if (accepted && mine.ok && pairs.some(([a]) => a.py.startsWith("jnp.full")) && !mine.types.every((t) => t.weak)) seen.promoted++;
      }
      assert.deepEqual(failures, []);
      for (const [k, v] of Object.entries(seen)) assert.ok(v >= 2, `the generator made only ${v} cases of kind ${k}: ${JSON.stringify(seen)}`);
    });
  }
});

/**
 * For each leaf in the order it was generated (the order `nest` keeps), its
 * position among the tree's leaves in pytree order (dict keys sorted, as
 * JAX and our flatten sort them), so a body reads carry leaf k as `c[k]`.
 */
function pytreePositions(t: Tree): number[] {
  const gen = new Map<Leaf, number>();
  const assign = (x: Tree): void => {
    if (x.kind === "leaf") gen.set(x.leaf, gen.size);
    else if (x.kind === "list") x.items.forEach(assign);
    else if (x.kind === "dict") x.entries.forEach(([, c]) => assign(c));
  };
  const pos: number[] = [];
  let p = 0;
  const walk = (x: Tree): void => {
    if (x.kind === "leaf") pos[gen.get(x.leaf)!] = p++;
    else if (x.kind === "list") x.items.forEach(walk);
    else if (x.kind === "dict") [...x.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).forEach(([, c]) => walk(c));
  };
  assign(t);
  walk(t);
  return pos;
}
