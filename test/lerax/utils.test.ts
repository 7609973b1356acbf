/**
 * The lerax utilities at top level and inside traces (src/lerax/utils.ts), on real
 * sidecars, against lerax itself: `lerax.utils.filter_scan` and
 * `unstack_pytree` from PyPI (0.0.5), and `filter_cond` / `polyak_average`
 * written in Python from lerax's documentation (PyPI's lerax has neither:
 * test/trace/support/oracle.py). Generated cases (random trees, dtypes,
 * shapes, static leaves, options) run through jaxbridge and through Python
 * under `eqx.filter_jit`, and every leaf must agree exactly (bit for bit,
 * NaN payloads aside; statics by value). Where lerax raises, we raise.
 */
import assert from "node:assert/strict";
import { DeviceArray } from "../../src/values/device-array.js";
import { BridgeInputError, SidecarError } from "../../src/values/errors.js";
import { filterCond, filterScan, leraxCacheStats, polyakAverage, unstackPytree } from "../../src/lerax/utils.js";
import { Module } from "../../src/values/module.js";
import { array, NDArray } from "../../src/values/ndarray.js";
import { connect, getDefaultSession, type Session } from "../../src/session/session.js";
import { TraceError } from "../../src/trace/errors.js";
import { sha256Hex } from "../../src/trace/ir.js";
import { jnp } from "../../src/trace/lib/index.js";
import { jit, programStats, runProgram } from "../../src/trace/jit.js";
import { traceFlat } from "../../src/trace/trace.js";
import type { Tracer } from "../../src/trace/tracer.js";
import { flatten } from "../../src/values/tree.js";
import * as G from "../trace/support/lerax-gen.js";
import { Oracle, pick, randInt, randomArray, rng, type TreeReply } from "../trace/support/oracle.js";

const oracle = new Oracle();
let jb64: Session;
let jb32: Session;
const sessionFor = (x64: boolean): Session => (x64 ? jb64 : jb32);

// --- comparing leaves ----------------------------------------------------------------------

type Leaf = NDArray | { static: unknown };

const nums = (data: NDArray["data"]): number[] => Array.from(data as ArrayLike<number>);

async function ourLeaves(tree: unknown): Promise<Leaf[]> {
  return Promise.all(flatten(tree).leaves.map(async (l) => (l instanceof DeviceArray ? await l.toHost() : l instanceof NDArray ? l : { static: l })));
}

function sameElement(a: NDArray, b: NDArray, i: number): boolean {
  const x = a.flatItem(i);
  const y = b.flatItem(i);
  const eq = (p: unknown, q: unknown) => Object.is(p, q) || (typeof p === "number" && typeof q === "number" && Number.isNaN(p) && Number.isNaN(q));
  if (typeof x === "object" && typeof y === "object") return eq(x.re, y.re) && eq(x.im, y.im);
  return eq(x, y);
}

/** null when equal; else where and how they differ. Arrays bit for bit (any NaN equals any NaN). */
function compareLeaves(ours: Leaf[], theirs: Leaf[]): string | null {
  if (ours.length !== theirs.length) return `${ours.length} leaves here, ${theirs.length} in Python`;
  for (let k = 0; k < ours.length; k++) {
    const a = ours[k]!;
    const b = theirs[k]!;
    if (a instanceof NDArray && b instanceof NDArray) {
      if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join()) return `leaf ${k}: ${a.dtype}[${a.shape}] here, ${b.dtype}[${b.shape}] in Python`;
      const ab = a.bytes();
      const bb = b.bytes();
      if (ab.every((v, i) => v === bb[i])) continue;
      for (let i = 0; i < a.size; i++) if (!sameElement(a, b, i)) return `leaf ${k} (${a.dtype}[${a.shape}]): element ${i} is ${JSON.stringify(a.flatItem(i))} here, ${JSON.stringify(b.flatItem(i))} in Python`;
      continue;
    }
    if (a instanceof NDArray || b instanceof NDArray) return `leaf ${k}: ${a instanceof NDArray ? "an array" : JSON.stringify(a.static)} here, ${b instanceof NDArray ? "an array" : JSON.stringify(b.static)} in Python`;
    if (JSON.stringify(a.static) !== JSON.stringify(b.static)) return `leaf ${k}: static ${JSON.stringify(a.static)} here, ${JSON.stringify(b.static)} in Python`;
  }
  return null;
}

type Ours = { ok: true; value: unknown } | { ok: false; error: unknown };

async function attempt(fn: () => unknown): Promise<Ours> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Both succeed with equal leaves, or both raise (and ours with a message matching `why`). */
async function agree(ours: Ours, theirs: TreeReply, expectError: RegExp | null): Promise<string | null> {
  if (process.env.LERAX_DEBUG) console.log("DEBUG", ours.ok, theirs.ok, theirs.ok ? theirs.leaves.map((l) => (l instanceof NDArray ? `${l.dtype}[${l.shape}]` : JSON.stringify(l.static))).join(" ") : theirs.error.split("\n")[0]);
  if (!ours.ok && !theirs.ok) {
    const msg = String((ours.error as Error)?.message ?? ours.error);
    if (!expectError) return `both raised, though this case should not: ours ${JSON.stringify(msg)}; Python ${theirs.error.split("\n")[0]}`;
    if (!expectError.test(msg)) return `both raised, but ours says ${JSON.stringify(msg)} (expected ${expectError})`;
    return null;
  }
  if (!ours.ok) return `ours raised ${String(ours.error)}; Python gave a result`;
  if (!theirs.ok) return `Python raised ${theirs.error.split("\n")[0]}; ours gave a result`;
  if (expectError) return `both gave results, but this case should raise (${expectError})`;
  return compareLeaves(await ourLeaves(ours.value), theirs.leaves);
}

const pyBool = (b: boolean) => (b ? "True" : "False");
const PRELUDE = "import equinox as eqx\n";

function specPicker(r: () => number, dtypes: readonly import("../../src/values/dtype.js").DType[], shapes: readonly number[][]): () => G.Spec {
  return () => ({ dtype: pick(r, dtypes), shape: [...pick(r, shapes)] });
}

// --- generated cases ----------------------------------------------------------------------------

// Everything runs inside one describe so the sidecars live only while this file's tests run.
describe("lerax utilities (src/lerax/utils.ts)", function () {
  before(async function () {
    this.timeout(240_000);
    jb64 = await connect();
    jb32 = await connect({ x64: false });
  });
  after(async () => {
    oracle.close();
    await jb64?.close();
    await jb32?.close();
  });

  describe("lerax cross-checks: generated cases", function () {
    this.timeout(900_000);

    for (const x64 of [true, false]) {
      it(`filterScan at top level agrees with lerax.utils.filter_scan (26 cases, x64=${x64})`, async () => {
        const r = rng(x64 ? 1101 : 1102);
        const jb = sessionFor(x64);
        const dtypes = x64 ? (["float32", "float64", "float64", "int32", "int64", "bool"] as const) : (["float32", "float32", "int32", "bool"] as const);
        const shapes = [[], [3], [2, 3]];
        const failures: string[] = [];
        let errorsSeen = 0;
        for (let i = 0; i < 26; i++) {
          const arrays = new G.Arrays(r);
          const init = G.randomTemplate(r, arrays, specPicker(r, dtypes, shapes), { depth: 2 });
          const T = pick(r, [0, 1, 3, 4]);
          const useXs = r() < 0.75;
          const xsT = useXs ? G.randomTemplate(r, arrays, () => ({ dtype: pick(r, dtypes), shape: [T, ...pick(r, shapes)] }), { depth: 1, statics: false }) : null;
          const scope = G.mergeScopes(G.scopeOf("c", init), xsT ? G.scopeOf("x", xsT, true) : { refs: [], statics: [] });
          let carry = G.exprTreeFor(r, init, scope);
          const ySpecs = scope.refs.map((x) => x.t);
          const yTree: G.ExprTree = {
            kind: "dict",
            entries: [
              ["y0", { kind: "expr", e: G.genExpr(r, pick(r, ySpecs), scope) }],
              ["y1", r() < 0.3 ? { kind: "num", v: pick(r, [2, 1.5]) } : { kind: "expr", e: G.genExpr(r, pick(r, ySpecs), scope) }],
            ],
          };
          const reverse = r() < 0.3;
          const unroll = pick(r, [1, 1, 2, true] as const);
          const length = useXs ? (r() < 0.2 ? T : undefined) : T;
          // Error cases: a static carry leaf that changes (lerax asserts), or leading axes that disagree.
          const statics = G.staticPaths(init);
          let expect: RegExp | null = null;
          let xsV = xsT ? G.tsValue(xsT, arrays.list) : null;
          let xsPy = xsT ? G.pySource(xsT) : "None";
          const variant = r();
          if (variant < 0.12 && statics.length) {
            const path = pick(r, statics);
            carry = G.changeStatic(carry, path);
            expect = /non-array part of the carry must not change/;
          } else if (variant < 0.18 && xsT && T > 0) {
            const extra = randomArray(r, "float32", [T + 1]);
            xsV = [xsV, extra];
            arrays.list.push(extra);
            xsPy = `[${xsPy}, args[${arrays.list.length - 1}]]`;
            expect = /(got values with different leading axis sizes|disagrees with the leading axis sizes): .*xs\[1\] float32\[\d+\]/;
          }
          if (expect) errorsSeen++;
          const initV = G.tsValue(init, arrays.list);
          const body = (c: unknown, x: unknown) => [G.evalTree(carry, { c, x }), G.evalTree(yTree, { c, x })] as const;
          const ours = await attempt(() => filterScan(body as never, initV, xsV, { reverse, unroll, ...(length !== undefined ? { length } : {}), session: jb }));
          const py = `${PRELUDE}body = lambda c, x: (${G.pyTree(carry)}, ${G.pyTree(yTree)})
result = eqx.filter_jit(lambda init, xs: lerax.filter_scan(body, init, xs, length=${length ?? "None"}, reverse=${pyBool(reverse)}, unroll=${unroll === true ? "True" : unroll}))(${G.pySource(init)}, ${xsPy})`;
          const theirs = await oracle.execTree(x64, py, arrays.list);
          const why = await agree(ours, theirs, expect);
          if (why) failures.push(`case ${i}: ${why}\n${py}`);
        }
        assert.deepEqual(failures, []);
        assert.ok(errorsSeen >= 2, `only ${errorsSeen} error cases were generated`);
      });

      it(`filterCond at top level agrees with filter_cond as lerax documents it (18 cases, x64=${x64})`, async () => {
        const r = rng(x64 ? 1201 : 1202);
        const jb = sessionFor(x64);
        const dtypes = x64 ? (["float32", "float64", "int32", "int64", "bool"] as const) : (["float32", "int32", "bool"] as const);
        const shapes = [[], [2], [2, 3]];
        const failures: string[] = [];
        for (let i = 0; i < 18; i++) {
          const arrays = new G.Arrays(r);
          const nArgs = randInt(r, 1, 3);
          const argTs = Array.from({ length: nArgs }, () => G.randomTemplate(r, arrays, specPicker(r, dtypes, shapes), { depth: 1 }));
          const scope = G.scopeOf("a", { kind: "list", items: argTs });
          const outT = G.randomTemplate(r, new G.Arrays(r), () => ({ ...pick(r, scope.refs).t }), { depth: 2 });
          const tTree = G.exprTreeFor(r, outT, scope);
          let fTree = G.exprTreeFor(r, outT, scope);
          let expect: RegExp | null = null;
          const statics = G.staticPaths(outT);
          const variant = r();
          if (variant < 0.15 && statics.length) {
            fTree = G.changeStatic(fTree, pick(r, statics));
            expect = /non-array outputs of trueFun and falseFun must be identical/;
          } else if (variant < 0.25) {
            // A dtype that differs between the branches (strong types: lax.cond refuses).
            const leaf = G.arrayLeaves(outT)[0]!;
            const other = leaf.spec.dtype === "float32" ? "int32" : "float32";
            fTree = { kind: "dict", entries: [["__x", { kind: "none" }]] } as G.ExprTree;
            fTree = G.exprTreeFor(r, retype(outT, leaf.path, other), scope);
            expect = /branches must have equal output types but they differ:\n\nThe output of trueFun( at path \S+)? has type \w+\[[\d,]*\] but the corresponding output of falseFun has type \w+\[[\d,]*\], so the dtypes do not match\./;
          }
          const predKind = pick(r, ["js", "bool", "int"] as const);
          const truth = r() < 0.5;
          let pred: unknown = truth;
          let predPy = pyBool(truth);
          if (predKind !== "js") {
            const p = predKind === "bool" ? array(truth, "bool") : array(truth ? pick(r, [1, -3, 7]) : 0, "int32");
            arrays.list.push(p);
            pred = p;
            predPy = `args[${arrays.list.length - 1}]`;
          }
          const args = argTs.map((t) => G.tsValue(t, arrays.list));
          const tf = (...a: unknown[]) => G.evalTree(tTree, { a });
          const ff = (...a: unknown[]) => G.evalTree(fTree, { a });
          const ours = await attempt(() => filterCond.withOptions({ session: jb })(pred, tf as never, ff as never, ...args));
          const py = `${PRELUDE}tf = lambda *a: ${G.pyTree(tTree)}
ff = lambda *a: ${G.pyTree(fTree)}
result = eqx.filter_jit(lambda p, *xs: filter_cond(p, tf, ff, *xs))(${predPy}, ${argTs.map((t) => G.pySource(t)).join(", ")})`;
          const theirs = await oracle.execTree(x64, py, arrays.list);
          const why = await agree(ours, theirs, expect);
          if (why) failures.push(`case ${i} (pred ${predKind} ${truth}): ${why}\n${py}`);
        }
        assert.deepEqual(failures, []);
      });

      it(`polyakAverage on host trees, device trees and inside jit agrees with polyak_average as lerax documents it (14 cases, x64=${x64})`, async () => {
        const r = rng(x64 ? 1301 : 1302);
        const jb = sessionFor(x64);
        const inexact = x64 ? (["float32", "float64", "float16", "bfloat16", "complex64", "complex128"] as const) : (["float32", "float16", "bfloat16", "complex64"] as const);
        const exact = x64 ? (["int32", "int64", "bool", "uint8"] as const) : (["int32", "bool", "uint8"] as const);
        const shapes = [[], [3], [2, 2]];
        const failures: string[] = [];
        for (let i = 0; i < 14; i++) {
          const arrays = new G.Arrays(r);
          const online = G.randomTemplate(r, arrays, () => ({ dtype: r() < 0.7 ? pick(r, inexact) : pick(r, exact), shape: [...pick(r, shapes)] }), { depth: 2 });
          // The target: same structure and inexact leaves; other leaves may be anything (they come from online).
          const mirror = (t: G.Template): G.Template => {
            switch (t.kind) {
              case "array":
                return G.isFloat(t.spec.dtype) || t.spec.dtype.startsWith("complex") ? arrays.add(t.spec) : r() < 0.5 ? arrays.add({ dtype: pick(r, exact), shape: [4] }) : { kind: "static", value: "other" };
              case "static":
                return { kind: "static", value: r() < 0.5 ? t.value : 99 };
              case "none":
                return t;
              case "list":
                return { kind: "list", items: t.items.map(mirror) };
              case "dict":
                return { kind: "dict", entries: t.entries.map(([k, c]) => [k, mirror(c)]) };
            }
          };
          let target = mirror(online);
          let expect: RegExp | null = null;
          const variant = r();
          if (variant < 0.12) {
            target = { kind: "dict", entries: [["extra", arrays.add({ dtype: "float32", shape: [] })], ["rest", target]] };
            expect = /same structure/;
          } else if (variant < 0.2) {
            const leaf = G.arrayLeaves(online).find((l) => G.isFloat(l.spec.dtype));
            if (leaf) {
              target = replaceAt(target, leaf.path, arrays.add({ dtype: "int32", shape: leaf.spec.shape }));
              expect = /same structure and the same inexact array leaves/;
            }
          }
          const tau = pick(r, [0, 1, 0.005, 0.1, 0.5, Math.round(r() * 1e6) / 1e6]);
          const mode = pick(r, ["host", "device", "jit"] as const);
          const o = G.tsValue(online, arrays.list);
          const t = G.tsValue(target, arrays.list);
          const ours = await attempt(async () => {
            if (mode === "host") return polyakAverage(o, t, tau, { session: jb });
            if (mode === "device") return polyakAverage(await jb.put(o), await jb.put(t), tau);
            return jit((a: unknown, b: unknown) => polyakAverage(a, b, tau), { session: jb })(o, t);
          });
          const py = `${PRELUDE}result = eqx.filter_jit(lambda o, t: polyak_average(o, t, ${tau}))(${G.pySource(online, (id) => `jnp.asarray(args[${id}])`)}, ${G.pySource(target, (id) => `jnp.asarray(args[${id}])`)})`;
          const theirs = await oracle.execTree(x64, py, arrays.list);
          const why = await agree(ours, theirs, expect);
          if (why) failures.push(`case ${i} (${mode}, tau ${tau}): ${why}\n${py}`);
        }
        assert.deepEqual(failures, []);
      });
    }

    it("unstackPytree on host trees (sliced in TypeScript) and device trees (one program) agrees with lerax.utils.unstack_pytree (30 cases)", async () => {
      const r = rng(1401);
      const dtypes = ["float32", "float64", "float16", "bfloat16", "int8", "uint8", "int32", "int64", "bool", "complex64"] as const;
      const failures: string[] = [];
      let errors = 0;
      for (let i = 0; i < 30; i++) {
        const arrays = new G.Arrays(r);
        const N = pick(r, [0, 1, 2, 3, 5]);
        const axis = pick(r, [0, 0, 1, -1, -2]);
        const minRank = axis >= 0 ? axis + 1 : -axis;
        const spec = (): G.Spec => {
          const rank = randInt(r, minRank, 3);
          const shape = Array.from({ length: rank }, () => randInt(r, 1, 3));
          shape[axis >= 0 ? axis : rank + axis] = N;
          return { dtype: pick(r, dtypes), shape };
        };
        let tree = G.randomTemplate(r, arrays, spec, { depth: 2, statics: false });
        let expect: RegExp | null = null;
        const variant = r();
        if (variant < 0.12) {
          const s = spec();
          s.shape[axis >= 0 ? axis : s.shape.length + axis] = N + 1;
          tree = { kind: "list", items: [tree, arrays.add(s)] };
          expect = /all leaves must have the same size along axis/;
        } else if (variant < 0.18) {
          tree = { kind: "dict", entries: [["n", { kind: "static", value: 3 }], ["t", tree]] };
          expect = /every leaf must be an array/;
        } else if (variant < 0.22) {
          tree = { kind: "list", items: [tree, arrays.add({ dtype: "float32", shape: [] })] };
          expect = /out of bounds/;
        }
        if (expect) errors++;
        const host = G.tsValue(tree, arrays.list);
        const py = `result = lerax.unstack_pytree(${G.pySource(tree, (id) => `jnp.asarray(args[${id}])`)}, axis=${axis})`;
        const theirs = await oracle.execTree(true, py, arrays.list);
        const fromHost = await attempt(() => unstackPytree(host, { axis }));
        const whyHost = await agree(fromHost, theirs, expect);
        if (whyHost) failures.push(`case ${i} (host, axis ${axis}, N ${N}): ${whyHost}\n${py}`);
        if (fromHost.ok) {
          const leaves = flatten(fromHost.value).leaves;
          assert.ok(leaves.every((l) => l instanceof NDArray), "host slices are NDArrays, synchronously");
        }
        const fromDevice = await attempt(async () => unstackPytree(await jb64.put(host), { axis }));
        const whyDev = await agree(fromDevice, theirs, expect);
        if (whyDev) failures.push(`case ${i} (device, axis ${axis}, N ${N}): ${whyDev}\n${py}`);
      }
      assert.deepEqual(failures, []);
      assert.ok(errors >= 3);
    });

    it("nested control flow at top level (cond in scan, scan in cond, scan in scan, cond in cond, three deep) agrees with lerax (15 cases)", async () => {
      const r = rng(1501);
      const failures: string[] = [];
      for (let i = 0; i < 15; i++) {
        const kind = (["condInScan", "scanInCond", "scanInScan", "condInCond", "threeDeep"] as const)[i % 5]!;
        const dtype = pick(r, ["float32", "float64"] as const);
        const n = pick(r, [1, 3]);
        const T = pick(r, [2, 4]);
        const K = pick(r, [1, 3]);
        const A = pick(r, [0.5, 1.5, -0.75]);
        const arrays = new G.Arrays(r);
        const h = arrays.add({ dtype, shape: [n] });
        const xs = arrays.add({ dtype, shape: kind === "scanInScan" || kind === "threeDeep" ? [T, K, n] : [T, n] });
        const p = array(r() < 0.5, "bool");
        arrays.list.push(p);
        const [hv, xv] = [G.tsValue(h, arrays.list) as NDArray, G.tsValue(xs, arrays.list) as NDArray];
        let ours: Ours;
        let py: string;
        const inner = (c: Tracer, x: Tracer) => [jnp.tanh(jnp.add(jnp.multiply(c, A), x)), jnp.sum(c)] as const;
        const innerPy = `lambda c, x: (jnp.tanh(jnp.add(jnp.multiply(c, ${A}), x)), jnp.sum(c))`;
        const condBody = (c: { h: Tracer; tag: string }, x: Tracer) => {
          const hh = filterCond(
            jnp.greater(jnp.sum(c.h), 0),
            (v: Tracer, xx: Tracer) => jnp.tanh(jnp.add(jnp.multiply(v, A), xx)),
            (v: Tracer, xx: Tracer) => jnp.subtract(jnp.multiply(v, 0.5), xx),
            c.h,
            x,
          );
          return [{ h: hh, tag: c.tag }, jnp.sum(hh)] as const;
        };
        const condBodyPy = `lambda c, x: (lambda hh: ({"h": hh, "tag": c["tag"]}, jnp.sum(hh)))(filter_cond(jnp.greater(jnp.sum(c["h"]), 0), lambda v, xx: jnp.tanh(jnp.add(jnp.multiply(v, ${A}), xx)), lambda v, xx: jnp.subtract(jnp.multiply(v, 0.5), xx), c["h"], x))`;
        switch (kind) {
          case "condInScan":
            ours = await attempt(() => filterScan(condBody, { h: hv, tag: "t" }, xv));
            py = `result = eqx.filter_jit(lambda i, xs: lerax.filter_scan(${condBodyPy}, i, xs))({"h": args[0], "tag": "t"}, args[1])`;
            break;
          case "scanInCond": {
            const tf = (a: Tracer, b: Tracer) => filterScan(inner, a, b);
            const ff = (a: Tracer, b: Tracer) => [jnp.multiply(a, 2), jnp.sum(b, { axis: 1 })] as const;
            ours = await attempt(() => filterCond(p, tf, ff as never, hv, xv));
            py = `result = eqx.filter_jit(lambda p, a, b: filter_cond(p, lambda a, b: lerax.filter_scan(${innerPy}, a, b), lambda a, b: (jnp.multiply(a, 2), jnp.sum(b, axis=1)), a, b))(args[2], args[0], args[1])`;
            break;
          }
          case "scanInScan": {
            const outer = (c: { h: Tracer; k: number }, x: Tracer) => {
              const [hh, ys] = filterScan(inner, c.h, x, { reverse: true });
              return [{ h: hh, k: c.k }, ys] as const;
            };
            ours = await attempt(() => filterScan(outer, { h: hv, k: 3 }, xv));
            py = `result = eqx.filter_jit(lambda i, xs: lerax.filter_scan(lambda c, x: (lambda r: ({"h": r[0], "k": c["k"]}, r[1]))(lerax.filter_scan(${innerPy}, c["h"], x, reverse=True)), i, xs))({"h": args[0], "k": 3}, args[1])`;
            break;
          }
          case "condInCond": {
            const leaf1 = (a: Tracer) => ({ v: jnp.sin(a), s: "same" });
            const leaf2 = (a: Tracer) => ({ v: jnp.multiply(a, A), s: "same" });
            const outerT = (a: Tracer) => filterCond(jnp.greater(jnp.sum(a), 0), leaf1, leaf2, a);
            const outerF = (a: Tracer) => ({ v: jnp.negative(a), s: "same" });
            ours = await attempt(() => filterCond(p, outerT, outerF, hv));
            py = `l1 = lambda a: {"v": jnp.sin(a), "s": "same"}
l2 = lambda a: {"v": jnp.multiply(a, ${A}), "s": "same"}
result = eqx.filter_jit(lambda p, a: filter_cond(p, lambda a: filter_cond(jnp.greater(jnp.sum(a), 0), l1, l2, a), lambda a: {"v": jnp.negative(a), "s": "same"}, a))(args[2], args[0])`;
            break;
          }
          default: {
            // scan over T, whose body runs a cond whose true branch scans over K.
            const body = (c: Tracer, x: Tracer) => {
              const out = filterCond(
                jnp.greater(jnp.sum(c), 0),
                (cc: Tracer, xx: Tracer) => filterScan(inner, cc, xx)[0],
                (cc: Tracer, xx: Tracer) => jnp.subtract(cc, jnp.sum(xx, { axis: 0 })),
                c,
                x,
              );
              return [out, jnp.sum(out)] as const;
            };
            ours = await attempt(() => filterScan(body, hv, xv, { unroll: 2 }));
            py = `result = eqx.filter_jit(lambda i, xs: lerax.filter_scan(lambda c, x: (lambda o: (o, jnp.sum(o)))(filter_cond(jnp.greater(jnp.sum(c), 0), lambda cc, xx: lerax.filter_scan(${innerPy}, cc, xx)[0], lambda cc, xx: jnp.subtract(cc, jnp.sum(xx, axis=0)), c, x)), i, xs, unroll=2))(args[0], args[1])`;
          }
        }
        const theirs = await oracle.execTree(true, PRELUDE + py, arrays.list);
        const why = await agree(ours, theirs, null);
        if (why) failures.push(`case ${i} (${kind}, ${dtype}): ${why}\n${py}`);
      }
      assert.deepEqual(failures, []);
    });
  });

  function retype(t: G.Template, path: readonly G.Key[], dtype: import("../../src/values/dtype.js").DType): G.Template {
    if (path.length === 0) {
      if (t.kind !== "array") throw new Error("not an array leaf");
      return { ...t, spec: { ...t.spec, dtype } };
    }
    const [head, ...rest] = path;
    if (t.kind === "list") return { kind: "list", items: t.items.map((c, i) => (i === head ? retype(c, rest, dtype) : c)) };
    if (t.kind === "dict") return { kind: "dict", entries: t.entries.map(([k, c]) => [k, k === head ? retype(c, rest, dtype) : c]) };
    throw new Error("bad path");
  }

  function replaceAt(t: G.Template, path: readonly G.Key[], by: G.Template): G.Template {
    if (path.length === 0) return by;
    const [head, ...rest] = path;
    if (t.kind === "list") return { kind: "list", items: t.items.map((c, i) => (i === head ? replaceAt(c, rest, by) : c)) };
    if (t.kind === "dict") return { kind: "dict", entries: t.entries.map(([k, c]) => [k, k === head ? replaceAt(c, rest, by) : c]) };
    throw new Error("bad path");
  }

  // --- behaviour ---------------------------------------------------------------------------------

  describe("lerax utilities at top level", function () {
    this.timeout(120_000);

    it("filterScan: a second call with the same signature does not retrace, sends only the hash, and does not recompile", async () => {
      let traced = 0;
      const body = (c: { h: Tracer; act: string; n: number }, x: Tracer) => {
        traced++;
        const h = jnp.tanh(jnp.add(jnp.multiply(c.h, c.n), x));
        return [{ ...c, h }, jnp.sum(h)] as const;
      };
      const init = { h: array([0.1, -0.2], "float32"), act: "tanh", n: 2 };
      const xs = array([[1, 2], [3, 4], [5, 6]], "float32");
      const jb = getDefaultSession();
      const before = await programStats(jb);
      const [c1, y1] = await filterScan(body, init, xs);
      assert.equal(c1.act, "tanh");
      assert.equal(c1.n, 2);
      assert.ok(c1.h instanceof DeviceArray && y1 instanceof DeviceArray);
      assert.deepEqual(y1.shape, [3]);
      for (let i = 0; i < 3; i++) await filterScan(body, { ...init, h: array([i, i], "float32") }, xs);
      assert.equal(traced, 1, "the body was traced once");
      assert.deepEqual(leraxCacheStats.filterScan(body), { traces: 1, hits: 3, calls: 4, programsSent: 1 });
      const after = await programStats(jb);
      assert.equal(after.lowered - before.lowered, 1, "lowered once");
      assert.equal(after.traces - before.traces, 1, "JAX compiled once");
      assert.equal(after.hits - before.hits, 3);
      // A different static value (or shape, or option) is a new signature.
      await filterScan(body, { ...init, n: 3 }, xs);
      await filterScan(body, init, xs, { reverse: true });
      assert.equal(traced, 3);
      assert.equal(leraxCacheStats.filterScan(body).traces, 3);
    });

    it("filterCond: both values of a JS boolean predicate share one program; static outputs stay in TypeScript", async () => {
      const t = (x: Tracer, mode: string) => ({ y: jnp.multiply(x, 2), mode, k: 1 });
      const f = (x: Tracer, mode: string) => ({ y: jnp.negative(x), mode, k: 1 });
      const x = array([1, -2], "float32");
      const a = await filterCond(true, t, f, x, "m");
      const b = await filterCond(false, t, f, x, "m");
      assert.equal(a.mode, "m");
      assert.equal(b.k, 1);
      assert.deepEqual(nums((await a.y.toHost()).data), [2, -4]);
      assert.deepEqual(nums((await b.y.toHost()).data), [-1, 2]);
      const d = await getDefaultSession().put(array(true, "bool")); // the session the two calls above ran on
      const c = await filterCond(d, t, f, x, "m");
      assert.deepEqual(nums((await c.y.toHost()).data), [2, -4]);
      assert.deepEqual(leraxCacheStats.filterCond(t, f), { traces: 1, hits: 2, calls: 3, programsSent: 1 });
    });

    it("filterCond: static outputs that differ are an error naming the path and both values", async () => {
      const t = (x: Tracer) => ({ y: x, cfg: { act: "relu" } });
      const f = (x: Tracer) => ({ y: x, cfg: { act: "tanh" } });
      await assert.rejects(filterCond(true, t, f, array([1], "float32")), (e: unknown) => {
        assert.ok(e instanceof TraceError);
        assert.match(e.message, /\['cfg'\]\['act'\]/);
        assert.match(e.message, /trueFun gives 'relu', falseFun gives 'tanh'/);
        return true;
      });
      const g = (x: Tracer) => ({ y: jnp.sum(x), cfg: { act: "relu" } });
      await assert.rejects(filterCond(false, t, g, array([1, 2], "float32")), /shape/);
    });

    it("filterScan: a static carry leaf that changes is an error naming the path and both values", async () => {
      const body = (c: { h: Tracer; step: number }, x: Tracer) => [{ h: jnp.add(c.h, x), step: c.step + 1 }, x] as const;
      await assert.rejects(filterScan(body, { h: array([0], "float32"), step: 0 }, array([[1], [2]], "float32")), (e: unknown) => {
        assert.ok(e instanceof TraceError);
        assert.match(e.message, /\['step'\]: init has 0, f returned 1/);
        return true;
      });
      await assert.rejects(filterScan((c: Tracer, x: { a: Tracer; b: Tracer }) => [c, x.a] as const, array(0, "float32"), { a: array([1, 2, 3], "float32"), b: array([1, 2], "float32") }), /got values with different leading axis sizes: xs\['a'\] float32\[3\], xs\['b'\] float32\[2\]/);
    });

    it("filterScan without xs takes a length, and the options reach lax.scan", async () => {
      const body = (c: Tracer) => [jnp.add(c, 1), c] as const;
      const [c, ys] = await filterScan(body, array(0, "int32"), null, { length: 4, reverse: true, unroll: true });
      assert.equal((await c.toHost()).item(), 4);
      assert.deepEqual(nums((await ys.toHost()).data), [3, 2, 1, 0]);
    });

    it("{fetch: true} resolves to host arrays; static leaves come back unchanged", async () => {
      const body = (c: { h: Tracer; tag: string }, x: Tracer) => [{ h: jnp.add(c.h, x), tag: c.tag }, jnp.multiply(x, 2)] as const;
      const [c, ys] = await filterScan(body, { h: array([0, 0], "float32"), tag: "t" }, array([[1, 2], [3, 4]], "float32"), { fetch: true });
      assert.ok((c.h as unknown) instanceof NDArray && (ys as unknown) instanceof NDArray);
      assert.deepEqual(nums((c.h as unknown as NDArray).data), [4, 6]);
      assert.equal(c.tag, "t");
      const p = await polyakAverage({ w: array([1, 3], "float64") }, { w: array([3, 1], "float64") }, 0.5, { fetch: true });
      assert.deepEqual(nums((p.w as unknown as NDArray).data), [2, 2]);
      const u = await unstackPytree(await jb64.put({ a: array([1, 2], "int32") }), { fetch: true });
      assert.ok((u[1]!.a as unknown) instanceof NDArray);
      assert.equal((u[1]!.a as unknown as NDArray).item(), 2);
    });

    it("runs on the session that owns the DeviceArrays, or the explicit one; mixing sidecars is an error naming the leaf", async () => {
      const body = (c: Tracer, x: Tracer) => [jnp.add(c, x), c] as const;
      const x32 = await jb32.put(array([1, 2], "float32"));
      const [c] = await filterScan(body, array(0, "float32"), x32);
      assert.equal((c as DeviceArray).owner, jb32);
      const [c2] = await filterScan(body, array(0, "float32"), array([1, 2], "float32"), { session: jb32 });
      assert.equal((c2 as DeviceArray).owner, jb32);
      const x64 = await jb64.put(array([1, 2], "float32"));
      await assert.rejects(filterScan(body, x64, x32), (e: unknown) => e instanceof BridgeInputError && /belongs to sidecar/.test(e.message) && /args\[1\]/.test(e.message));
      await assert.rejects(filterScan(body, array(0, "float32"), x64, { session: jb32 }), /belongs to sidecar/);
    });

    it("the same NDArray at several leaves is one program input, sent once", async () => {
      const f = jit((a: NDArray, b: NDArray) => jnp.add(a as unknown as Tracer, b as unknown as Tracer));
      const x = array([1, 2, 3], "float32");
      const y = (await f(x, x)) as DeviceArray;
      assert.deepEqual(nums((await y.toHost()).data), [2, 4, 6]);
      assert.equal(f.programs[0]!.program.inputs.length, 1);
      await f(x, array([1, 1, 1], "float32"));
      assert.equal(f.signatures, 2, "aliasing is part of the signature");
      assert.equal(f.programs[1]!.program.inputs.length, 2);
    });

    it("unstackPytree on a host tree: synchronous, views for the leading axis, copies otherwise", () => {
      const a = array([[1, 2], [3, 4], [5, 6]], "float32");
      const b = array([7, 8, 9], "int32");
      const parts = unstackPytree({ a, b, m: null });
      assert.equal(parts.length, 3);
      assert.deepEqual(nums(parts[1]!.a.data), [3, 4]);
      assert.equal(parts[2]!.b.item(), 9);
      assert.equal(parts[1]!.m, null);
      assert.equal(parts[1]!.a.data.buffer, a.data.buffer, "a view, not a copy");
      (a.data as Float32Array)[2] = 30;
      assert.equal(parts[1]!.a.item(0), 30);
      const cols = unstackPytree({ a }, { axis: 1 });
      assert.equal(cols.length, 2);
      assert.deepEqual(nums(cols[0]!.a.data), [1, 30, 5]);
      assert.notEqual(cols[0]!.a.data.buffer, a.data.buffer);
    });

    it("unstackPytree's size check names every offending leaf with its size", () => {
      assert.throws(
        () => unstackPytree({ a: array([1, 2, 3], "float32"), b: [array([1, 2], "int32"), array([[1], [2], [3], [4]], "int32")] }),
        (e: unknown) => e instanceof BridgeInputError && e.message.includes("['a'] (float32[3]) has 3") && e.message.includes("['b'][0] (int32[2]) has 2") && e.message.includes("['b'][1] (int32[4, 1]) has 4"),
      );
    });

    it("unstackPytree on a device tree is one jitted program, traced once per signature", async () => {
      const tree = await jb64.put({ a: array([[1, 2], [3, 4]], "float32"), b: array([5, 6], "int64") });
      const before = leraxCacheStats.unstackPytree();
      const parts = await unstackPytree(tree);
      await unstackPytree(tree);
      const after = leraxCacheStats.unstackPytree();
      assert.equal(parts.length, 2);
      assert.ok(parts[0]!.a instanceof DeviceArray);
      assert.deepEqual(nums((await parts[1]!.a.toHost()).data), [3, 4]);
      assert.equal((await parts[1]!.b.toHost()).item(), 6);
      assert.equal(after.calls - before.calls, 2);
      assert.ok(after.traces - before.traces <= 1);
    });

    it("polyakAverage: inexact leaves averaged in their dtype, the rest from online; a Module's static fields kept", async () => {
      class Net extends Module {
        w: NDArray | DeviceArray | Tracer;
        steps: NDArray | DeviceArray | Tracer;
        act: string;
        static staticFields = ["act"];
        constructor(w: NDArray, steps: NDArray, act: string) {
          super();
          this.w = w;
          this.steps = steps;
          this.act = act;
        }
      }
      const online = new Net(array([1, 2], "float32"), array([5], "int32"), "tanh");
      const target = new Net(array([3, 4], "float32"), array([9], "int32"), "tanh");
      const out = await polyakAverage(online, target, 0.25);
      assert.ok(out instanceof Net);
      assert.equal(out.act, "tanh");
      const w = await (out.w as DeviceArray).toHost();
      assert.equal(w.dtype, "float32");
      assert.deepEqual(nums(w.data), [Math.fround(Math.fround(0.25) * 1 + Math.fround(0.75) * 3), Math.fround(Math.fround(0.25) * 2 + Math.fround(0.75) * 4)]);
      assert.equal((await (out.steps as DeviceArray).toHost()).item(), 5);
      await assert.rejects(polyakAverage(online, new Net(array([3, 4], "float32"), array([9], "int32"), "relu"), 0.5), (e: unknown) => e instanceof BridgeInputError && /\.act/.test(e.message));
      await assert.rejects(polyakAverage({ w: array([1, 2], "float32") }, { w: array([1, 2, 3], "float32") }, 0.5), /same shape/);
    });

    it("the utilities work inside traces and nest (unstack and polyak in a jit; polyak in a scan body)", async () => {
      const f = jit((tree: { a: NDArray }, online: NDArray, target: NDArray) => {
        const parts = unstackPytree(tree as unknown as { a: Tracer });
        const avg = polyakAverage(online as unknown as Tracer, target as unknown as Tracer, 0.5);
        const [c] = filterScan((c: Tracer, x: Tracer) => [polyakAverage(c, x, 0.1), c] as const, target as unknown as Tracer, tree.a as unknown as Tracer);
        return { first: parts[0]!.a, avg, c };
      }, { session: jb64 });
      const out = (await f({ a: array([[1, 2], [3, 4]], "float64") }, array([2, 2], "float64"), array([0, 4], "float64"))) as { first: DeviceArray; avg: DeviceArray; c: DeviceArray };
      assert.deepEqual(nums((await out.first.toHost()).data), [1, 2]);
      assert.deepEqual(nums((await out.avg.toHost()).data), [1, 3]);
      // polyakAverage(online = carry, target = x): 0.1 * carry + (1 - 0.1) * x.
      const c1 = [0.1 * 0 + (1 - 0.1) * 1, 0.1 * 4 + (1 - 0.1) * 2];
      const c2 = [0.1 * c1[0]! + (1 - 0.1) * 3, 0.1 * c1[1]! + (1 - 0.1) * 4];
      assert.deepEqual(nums((await out.c.toHost()).data), c2);
    });
  });

  describe("safety: programs name only allow-listed primitives", function () {
    this.timeout(60_000);
    it("a primitive outside the table, even nested in a scan body, is refused and the sidecar keeps serving", async () => {
      const jb = jb64;
      const t = traceFlat((a) => a!.mul(3), [{ dtype: "float32", shape: [3] }], { x64: jb.info.x64 });
      for (const prim of ["os.system", "__import__", "eval"]) {
        const bad = new TextEncoder().encode(new TextDecoder().decode(t.bytes).replace('"prim":"mul"', `"prim":"${prim}"`));
        await assert.rejects(runProgram(jb, { hash: sha256Hex(bad), bytes: bad, captures: [] }, [array([1, 2, 3], "float32")]), (e: unknown) => e instanceof SidecarError && e.remoteType === "NotAllowed" && e.message.includes(prim));
        await jb.ping();
      }
      const [c] = await filterScan((c: Tracer, x: Tracer) => [jnp.add(c, jnp.tanh(x)), c] as const, array(0, "float32"), array([1, 2, 3], "float32"));
      assert.ok(c instanceof DeviceArray);
      const scanProg = traceFlat(
        (a) => {
          const [cc] = filterScan((c: Tracer, x: Tracer) => [jnp.add(c, jnp.tanh(x)), c] as const, jnp.zeros([], "float32"), a!);
          return cc;
        },
        [{ dtype: "float32", shape: [3] }],
        { x64: jb.info.x64 },
      );
      const text = new TextDecoder().decode(scanProg.bytes);
      assert.match(text, /"prim":"tanh"/);
      const bad = new TextEncoder().encode(text.replace('"prim":"tanh"', '"prim":"subprocess"'));
      await assert.rejects(runProgram(jb, { hash: sha256Hex(bad), bytes: bad, captures: [] }, [array([1, 2, 3], "float32")]), (e: unknown) => e instanceof SidecarError && e.remoteType === "NotAllowed" && /subprocess/.test(e.message));
      await jb.ping();
      const again = await filterScan((c: Tracer, x: Tracer) => [jnp.add(c, x), c] as const, array(0, "float32"), array([1, 2, 3], "float32"));
      assert.equal((await (again[0] as DeviceArray).toHost()).item(), 6);
    });
  });
});
