/**
 * shardMap and the collectives against `jax.shard_map` written in Python,
 * on generated cases: meshes of 4 CPU devices (4 and 2×2), specs, shapes,
 * dtypes and each collective with its options. Each case is traced here,
 * lowered by the sidecar's own program/ code in the oracle process, and
 * compared bit for bit with the Python version (the same HLO: the programs
 * use jax.lax's own collectives). Errors found at trace time are checked
 * against what JAX says of the same mistake.
 */
import assert from "node:assert/strict";
import { Mesh, P, type PartitionSpec } from "../../../src/values/sharding.js";
import type { DType } from "../../../src/values/dtype.js";
import { TraceError } from "../../../src/trace/errors.js";
import { traceFlat } from "../../../src/trace/trace.js";
import type { Tracer } from "../../../src/trace/tracer.js";
import * as jnp from "../../../src/trace/lib/jnp.js";
import * as lax from "../../../src/trace/lib/lax.js";
import { shardMap } from "../../../src/trace/lib/sharding.js";
import { vmap } from "../../../src/trace/lib/transforms.js";
import "../../../src/trace/lib/index.js";
import { Oracle, pick, randInt, randomArray, rng } from "../support/oracle.js";
import { type Case, runCases } from "../support/cases.js";

const MESHES = [
  { mesh: Mesh.fromIds([0, 1, 2, 3], [4], ["x"]), py: "mesh((4,), ('x',))" },
  { mesh: Mesh.fromIds([0, 1, 2, 3], [2, 2], ["x", "y"]), py: "mesh((2, 2), ('x', 'y'))" },
];

const pySpec = (s: PartitionSpec): string => `P(${s.entries.map((e) => (e === null ? "None" : e.length === 1 ? `'${e[0]}'` : `(${e.map((n) => `'${n}'`).join(", ")},)`)).join(", ")})`;
const pyAxis = (ax: readonly string[]): string => (ax.length === 1 ? `'${ax[0]}'` : `(${ax.map((a) => `'${a}'`).join(", ")})`);
const tsAxis = (ax: readonly string[]): string | readonly string[] => (ax.length === 1 ? ax[0]! : ax);

type Kind = "psum" | "pmean" | "pmax" | "pmin" | "all_gather" | "psum_scatter" | "ppermute" | "all_to_all" | "axis_index";
const KINDS: Kind[] = ["psum", "pmean", "pmax", "pmin", "all_gather", "psum_scatter", "ppermute", "all_to_all", "axis_index"];

/** One generated case: the collective over `axes` of an input split so that it varies over them. */
function makeCase(seed: number): Case {
  const r = rng(seed);
  const { mesh, py: pyMesh } = pick(r, MESHES);
  const kind = pick(r, KINDS);
  // ppermute takes several axes in the mesh's order only (the refusal is checked below).
  const axes = mesh.axisNames.length === 2 ? pick(r, kind === "ppermute" ? [["x"], ["y"], ["x", "y"]] : [["x"], ["y"], ["x", "y"], ["y", "x"]]) : ["x"];
  const n = mesh.axisSize(axes);
  const others = mesh.axisNames.filter((a) => !axes.includes(a));
  const reducing = kind === "psum" || kind === "pmean" || kind === "pmax" || kind === "pmin";
  const dtype: DType =
    kind === "psum" || kind === "pmean"
      ? pick(r, ["float32", "float64", "int32", "bfloat16", "bool"])
      : reducing || kind === "psum_scatter"
        ? pick(r, ["float32", "float64", "int32", "uint8"])
        : pick(r, ["float32", "int32", "float64", "bool", "int8"]);

  // Per-shard shape, shaped so that the collective's constraints hold.
  // Rank >= 1, so that the input varies over the collective's axes (a spec needs an axis to split).
  const rank = randInt(r, 1, 3);
  const local = Array.from({ length: rank }, () => randInt(r, 1, 3));
  let body = "";
  let ts: (b: Tracer) => Tracer;
  if (reducing) {
    const f = { psum: lax.psum, pmean: lax.pmean, pmax: lax.pmax, pmin: lax.pmin }[kind];
    ts = (b) => f(b, tsAxis(axes));
    body = `lax.${kind}(b, ${pyAxis(axes)})`;
  } else if (kind === "all_gather") {
    const tiled = r() < 0.5 && rank > 0;
    const axis = randInt(r, tiled ? -rank : -rank - 1, tiled ? rank - 1 : rank);
    const to = pick(r, ["varying", "invarying"] as const);
    ts = (b) => lax.allGather(b, tsAxis(axes), { axis, tiled, to });
    body = `lax.all_gather(b, ${pyAxis(axes)}, axis=${axis}, tiled=${tiled ? "True" : "False"}, to='${to}')`;
  } else if (kind === "psum_scatter") {
    const tiled = r() < 0.5;
    const d = randInt(r, 0, rank - 1);
    local[d] = tiled ? n * randInt(r, 1, 2) : n;
    ts = (b) => lax.psumScatter(b, tsAxis(axes), { scatterDimension: d, tiled });
    body = `lax.psum_scatter(b, ${pyAxis(axes)}, scatter_dimension=${d}, tiled=${tiled ? "True" : "False"})`;
  } else if (kind === "ppermute") {
    const order = Array.from({ length: n }, (_, i) => i).sort(() => r() - 0.5);
    const perm = order.map((dst, src) => [src, dst] as [number, number]).filter(() => r() < 0.8);
    ts = (b) => lax.ppermute(b, tsAxis(axes), perm);
    body = `lax.ppermute(b, ${pyAxis(axes)}, ${JSON.stringify(perm.map(([a, b]) => [a, b]))})`;
  } else if (kind === "all_to_all") {
    const tiled = r() < 0.5;
    const split = randInt(r, 0, rank - 1);
    const concat = randInt(r, 0, rank - 1);
    local[split] = tiled ? n * randInt(r, 1, 2) : n;
    ts = (b) => lax.allToAll(b, tsAxis(axes), split, concat, { tiled });
    body = `lax.all_to_all(b, ${pyAxis(axes)}, ${split}, ${concat}, tiled=${tiled ? "True" : "False"})`;
  } else {
    ts = () => lax.axisIndex(tsAxis(axes));
    body = `lax.axis_index(${pyAxis(axes)})`;
  }

  // The input varies over the collective's axes (and maybe over the others).
  const entries: (string | string[] | null)[] = local.map(() => null);
  entries[randInt(r, 0, rank - 1)] = [...axes];
  for (const o of others) {
    if (r() < 0.5) continue;
    const k = randInt(r, 0, rank - 1);
    entries[k] = [...((entries[k] as string[] | null) ?? []), o];
  }
  const inSpec = P(...entries);
  const global = local.map((d, i) => (entries[i] ? d * mesh.axisSize(entries[i] as string[]) : d));
  // Out: every mesh axis on axis 0 of a rank >= 1 result (valid whatever the result varies over),
  // or P() for a reduction over every axis the input varies over.
  const replicated = reducing && inSpec.axes.every((a) => axes.includes(a)) && r() < 0.5;
  const outSpec = replicated ? P() : P([...mesh.axisNames]);
  const tsBody = (b: Tracer) => {
    const y = ts(b);
    return y.ndim === 0 && !replicated ? jnp.reshape(y, [1]) : y;
  };
  const pyBody = replicated ? body : `(lambda y: jnp.reshape(y, (1,)) if y.ndim == 0 else y)(${body})`;
  const x = randomArray(r, dtype, global, { lo: -8, hi: 8 });
  return {
    desc: `seed ${seed}: ${body} on ${pyMesh}, x ${dtype}[${global.join(",")}] in ${pySpec(inSpec)} out ${pySpec(outSpec)}`,
    args: [x],
    ts: ([x0]) => shardMap(tsBody, { mesh, inSpecs: inSpec, outSpecs: outSpec })(x0!),
    py: `jax.shard_map(lambda b: ${pyBody}, mesh=${pyMesh}, in_specs=${pySpec(inSpec)}, out_specs=${pySpec(outSpec)})(x0)`,
  };
}

describe("shardMap collectives equal jax.shard_map in Python (generated cases, 4 CPU devices)", function () {
  this.timeout(600_000);
  const oracle = new Oracle({ numCpuDevices: 4 });
  after(() => oracle.close());

  it("every collective, with its options, over 1-D and 2-D meshes, bit for bit", async () => {
    const cases = Array.from({ length: 72 }, (_, i) => makeCase(1000 + i));
    for (const k of KINDS) assert.ok(cases.some((c) => c.py.includes(`lax.${k}(`)), `the generator covers ${k}`);
    await runCases(oracle, cases, true, 12);
  });

  it("psum of a pytree is one equation, as lax.psum of a tree in Python", async () => {
    const mesh = MESHES[1]!.mesh;
    const r = rng(7);
    const a = randomArray(r, "float32", [4, 2]);
    const b = randomArray(r, "int32", [2, 8]);
    const both = P(["x", "y"]);
    const cases: Case[] = [
      {
        desc: "psum of {a, b} over both axes",
        args: [a, b],
        ts: ([x0, x1]) => {
          const out = shardMap((t: { a: Tracer; b: Tracer }) => lax.psum(t, ["x", "y"]), { mesh, inSpecs: [{ a: both, b: P(null, ["x", "y"]) }], outSpecs: { a: P(), b: P() } })({ a: x0!, b: x1! });
          return [out.a, out.b];
        },
        py: `(lambda o: [o['a'], o['b']])(jax.shard_map(lambda t: lax.psum(t, ('x', 'y')), mesh=mesh((2, 2), ('x', 'y')), in_specs=({'a': P(('x', 'y')), 'b': P(None, ('x', 'y'))},), out_specs={'a': P(), 'b': P()})({'a': x0, 'b': x1}))`,
      },
    ];
    await runCases(oracle, cases, true);
    const traced = traceFlat((x0, x1) => {
      const out = shardMap((t: { a: Tracer; b: Tracer }) => lax.psum(t, ["x", "y"]), { mesh, inSpecs: [{ a: both, b: P(null, ["x", "y"]) }], outSpecs: P() })({ a: x0!, b: x1! });
      return [out.a, out.b];
    }, [a, b], { x64: true });
    const body = traced.program.eqns[0]!.params.body as { eqns: { prim: string; inputs: unknown[] }[] };
    assert.deepEqual(body.eqns.map((e) => [e.prim, e.inputs.length]), [["psum", 2]]);
  });

  it("closed-over values enter the body replicated; static leaves pass through; outputs are global", async () => {
    const mesh = MESHES[0]!.mesh;
    const r = rng(11);
    const x = randomArray(r, "float32", [8, 3]);
    const w = randomArray(r, "float32", [3]);
    const cases: Case[] = [
      {
        desc: "x * w summed over the batch shards, w closed over",
        args: [x, w],
        ts: ([x0, x1]) =>
          shardMap((t: { v: Tracer; scale: number }) => lax.psum(jnp.sum(jnp.multiply(jnp.multiply(t.v, x1!), t.scale), { axis: 0 }), "x"), { mesh, inSpecs: P("x"), outSpecs: P() })({ v: x0!, scale: 2 }),
        py: `jax.shard_map(lambda v: lax.psum(jnp.sum(v * x1 * 2, 0), 'x'), mesh=mesh((4,), ('x',)), in_specs=P('x'), out_specs=P())(x0)`,
      },
    ];
    await runCases(oracle, cases, true);
    const t = traceFlat((x0) => shardMap((v: Tracer) => [v, jnp.sum(v, { axis: 0 })], { mesh, inSpecs: P("x"), outSpecs: [P("x"), P("x")] })(x0!), [x], { x64: true });
    assert.deepEqual(t.outputs.map((o) => o.shape), [[8, 3], [12]]);
    const eq = t.program.eqns[0]!;
    assert.deepEqual((eq.params.body as { inputs: { shape: number[] }[] }).inputs.map((i) => i.shape), [[2, 3]]);
    // Non-array leaves of the body's result are static, as with jit: no output, no spec needed, returned as they are.
    let back: unknown;
    const s = traceFlat((x0) => {
      back = shardMap((v: Tracer) => ({ y: v, n: 3, tag: "t" }), { mesh, inSpecs: P("x"), outSpecs: P("x") })(x0!);
      return (back as { y: Tracer }).y;
    }, [x], { x64: true });
    assert.equal((s.program.eqns[0]!.params.out_specs as unknown[]).length, 1);
    assert.deepEqual([(back as { n: number }).n, (back as { tag: string }).tag], [3, "t"]);
  });

  it("vmap with an axisName binds that axis for the same collectives, as jax.vmap(axis_name=) does", async () => {
    const r = rng(5);
    const x = randomArray(r, "float32", [4, 3]);
    const y = randomArray(r, "int32", [2, 5], { lo: -9, hi: 9 });
    const cases: Case[] = [
      { desc: "psum over the batch", args: [x], ts: ([a]) => vmap((v: Tracer) => lax.psum(v, "i"), { axisName: "i" })(a!) as Tracer, py: "jax.vmap(lambda v: lax.psum(v, 'i'), axis_name='i')(x0)" },
      { desc: "pmean and pmax of a tree", args: [x], ts: ([a]) => vmap((v: Tracer) => [lax.pmean(v, "i"), lax.pmax(jnp.multiply(v, -1), "i")], { axisName: "i" })(a!) as Tracer[], py: "jax.vmap(lambda v: (lax.pmean(v, 'i'), lax.pmax(v * -1, 'i')), axis_name='i')(x0)" },
      { desc: "allGather (stacked and tiled) and axisIndex", args: [y], ts: ([a]) => vmap((v: Tracer) => [lax.allGather(v, "i"), lax.allGather(v, "i", { tiled: true }), jnp.add(v, lax.axisIndex("i"))], { axisName: "i" })(a!) as Tracer[], py: "jax.vmap(lambda v: (lax.all_gather(v, 'i'), lax.all_gather(v, 'i', tiled=True), v + lax.axis_index('i')), axis_name='i')(x0)" },
    ];
    await runCases(oracle, cases, true);
  });

  it("refuses at trace time what JAX refuses, naming the place", () => {
    const [m1, m2] = [MESHES[0]!.mesh, MESHES[1]!.mesh];
    const x = { dtype: "float32" as const, shape: [6, 4] };
    const trace = (fn: (x0: Tracer) => Tracer) => () => traceFlat(fn, [x], { x64: true });
    const throws = (fn: () => unknown, re: RegExp) => assert.throws(fn, (e: unknown) => e instanceof Error && re.test(e.message), String(re));
    throws(trace((v) => shardMap((b: Tracer) => b, { mesh: m1, inSpecs: P("x"), outSpecs: P("x") })(v)), /args\[0\]: NamedSharding\(.*spec=P\('x'\)\) splits axis 0 of an array of shape \[6, 4\] 4 ways, but 6 is not divisible by 4/);
    throws(trace((v) => shardMap((b: Tracer) => b, { mesh: m1, inSpecs: P(null, "z"), outSpecs: P() })(v)), /'z', which is not an axis of Mesh\('x': 4/);
    throws(trace((v) => shardMap((b: Tracer) => b, { mesh: m1, inSpecs: P(null, null, "x"), outSpecs: P() })(v)), /P\(None, None, 'x'\) has 3 entries but the array has rank 2/);
    throws(trace((v) => shardMap((b: Tracer) => lax.psum(b, "y"), { mesh: m1, inSpecs: P(null, "x"), outSpecs: P() })(v)), /unbound axis name 'y'.*bound here: 'x'/);
    throws(trace((v) => lax.psum(v, "x")), /unbound axis name 'x'.*none is bound here/);
    throws(trace((v) => shardMap((b: Tracer) => lax.psumScatter(b, "x"), { mesh: m1, inSpecs: P(null, "x"), outSpecs: P() })(v)), /scatter dimension 0 of f32\[6,1\] must equal the size 4/);
    throws(trace((v) => shardMap((b: Tracer) => lax.allToAll(b, ["x", "y"], 0, 1, { tiled: true }), { mesh: m2, inSpecs: P(), outSpecs: P() })(v)), /split axis 0 of f32\[6,4\] must be divisible by the size 4 of x, y/);
    throws(trace((v) => shardMap((b: Tracer) => lax.ppermute(b, "x", [[0, 1], [1, 1]]), { mesh: m1, inSpecs: P(null, "x"), outSpecs: P() })(v)), /destination 1 appears twice/);
    throws(trace((v) => shardMap((b: Tracer) => lax.ppermute(b, "x", [[0, 4]]), { mesh: m1, inSpecs: P(null, "x"), outSpecs: P() })(v)), /below the axis size 4/);
    throws(trace((v) => shardMap((b: Tracer) => lax.ppermute(b, ["y", "x"], [[0, 1]]), { mesh: m2, inSpecs: P(null, ["x", "y"]), outSpecs: P() })(v)), /must come in the mesh's order \(x, y\)/);
    throws(trace((v) => shardMap((b: Tracer) => b, { mesh: m1, inSpecs: [P(), P()], outSpecs: P() })(v)), /inSpecs\[1\] names nothing in the arguments/);
    throws(trace((v) => shardMap((b: Tracer) => [b, b], { mesh: m1, inSpecs: P(), outSpecs: [P()] })(v) as unknown as Tracer), /outSpecs has no entry for \[1\]/);
    throws(trace((v) => shardMap((b: Tracer) => jnp.sum(b), { mesh: m1, inSpecs: P(), outSpecs: P("x") })(v)), /1 entries for a per-shard result of type f32\[\]/);
    assert.throws(() => shardMap((b: Tracer) => b, { mesh: m1, inSpecs: P(), outSpecs: P() })(null as unknown as Tracer), (e: unknown) => e instanceof TraceError && /inside a traced function: wrap it in jit/.test(e.message));
  });

  it("JAX's own checks (check_vma) reach the caller from the first lowering, with JAX's message", async () => {
    const mesh = MESHES[0]!.mesh;
    const x = randomArray(rng(3), "float32", [8]);
    const cases: Case[] = [{ desc: "a varying value returned as replicated", args: [x], ts: ([x0]) => shardMap((b: Tracer) => jnp.multiply(b, 2), { mesh, inSpecs: P("x"), outSpecs: P() })(x0!), py: "x0" }];
    await assert.rejects(runCases(oracle, cases, true), /out_specs|replicat/);
  });
});
