/**
 * Sharded programs inside traces: `shardMap` (JAX's `jax.shard_map`) and
 * `withShardingConstraint` (`jax.lax.with_sharding_constraint`). Both
 * record one equation that the sidecar lowers with JAX's own function, never
 * by hand.
 *
 * `shardMap(f, {mesh, inSpecs, outSpecs})` traces `f` once as a body over
 * per-shard types (each array axis split as its spec says, divided by the
 * mesh axes' sizes) in a trace that binds the mesh's axis names, so the
 * collectives of collectives.ts inside know their sizes; outside, the
 * results have global types (each output axis multiplied back as the out
 * spec says). Values the body closes over enter it replicated (`P()`).
 */
import { describe } from "../../values/describe.js";
import { Mesh, NamedSharding, PartitionSpec, type WireSharding } from "../../values/sharding.js";
import { prefixLeaves } from "../../values/prefix.js";
import { flattenWithPath, keystr, unflatten } from "../../values/tree.js";
import { asTracer, bind, bind1, currentTrace, isArrayLeaf, Trace } from "../core.js";
import { type ParamValue, showAval } from "../ir.js";
import { Tracer } from "../tracer.js";
import { traceError } from "../errors.js";

export interface ShardMapOptions {
  mesh: Mesh;
  /** A PartitionSpec, or a tree prefix of the argument list with one per subtree (`[P("batch"), P()]` for `(x, params)`). */
  inSpecs: unknown;
  /** A PartitionSpec, or a tree prefix of the output. */
  outSpecs: unknown;
  /** JAX's `check_vma` (default true): JAX checks that an output unsplit over an axis is the same on every member of it. */
  checkVma?: boolean;
}

const isSpec = (x: unknown): x is PartitionSpec => x instanceof PartitionSpec;
const isNamed = (x: unknown): x is NamedSharding => x instanceof NamedSharding;

/** A wire value as an equation parameter (its JSON is all strings, ints and lists). */
const param = (w: unknown): ParamValue => w as ParamValue;

/** The per-shard shape of an array of global `shape` split as `spec` says over `mesh` (NamedSharding's rule), or a TraceError naming the place. */
function shardShape(op: string, mesh: Mesh, spec: PartitionSpec, shape: readonly number[], where: string): number[] {
  try {
    return new NamedSharding(mesh, spec).shardShape(shape);
  } catch (e) {
    throw traceError(op, `${where}: ${(e as Error).message}`);
  }
}

function checkSpecs(op: string, mesh: Mesh, specs: readonly (PartitionSpec | null)[], paths: readonly string[], what: string): PartitionSpec[] {
  return specs.map((s, i) => {
    if (s === null) throw traceError(op, `${what} has null for ${paths[i]}: use P() for an array every member gets whole`);
    for (const a of s.axes) if (!mesh.axisNames.includes(a)) throw traceError(op, `${what} for ${paths[i]}: ${s} names '${a}', which is not an axis of ${mesh}`);
    return s;
  });
}

/**
 * `shardMap(f, {mesh, inSpecs, outSpecs, checkVma})`: `f` runs on every
 * device of `mesh` with its shard of each argument, as `jax.shard_map`.
 * Call the result inside a traced function (`jit(shardMap(f, ...))`). Array
 * leaves of the arguments are split as `inSpecs` says; other leaves are
 * static and reach `f` as they are; likewise only the array leaves of what
 * `f` returns are outputs (with `outSpecs`), the rest come back as they are.
 */
export function shardMap<A extends unknown[], R>(f: (...args: A) => R, opts: ShardMapOptions): (...args: A) => R {
  const op = "shard_map";
  if (!(opts?.mesh instanceof Mesh)) throw traceError(op, `needs a Mesh as its mesh, got ${describe(opts?.mesh, "kind")}`);
  const { mesh } = opts;
  const checkVma = opts.checkVma ?? true;
  const name = f.name ? `shardMap(${f.name}) body` : "shardMap body";
  return (...args: A): R => {
    const parent = currentTrace();
    if (parent === undefined) throw traceError(op, "a shardMap function runs inside a traced function: wrap it in jit (jit(shardMap(f, {mesh, inSpecs, outSpecs})))");
    const leaves = flattenWithPath(args);
    const specs = prefixLeaves(opts.inSpecs, args, isSpec, "inSpecs", "PartitionSpec");
    const arrays: { slot: number; outer: Tracer; spec: PartitionSpec; path: string }[] = [];
    leaves.leaves.forEach(({ path, value }, slot) => {
      if (!isArrayLeaf(value)) return;
      const where = `args${keystr(path)}`;
      const [spec] = checkSpecs(op, mesh, [specs[slot]!], [where], "inSpecs");
      arrays.push({ slot, outer: asTracer(op, value), spec: spec!, path: where });
    });

    const body = new Trace(parent, name, undefined, mesh.shape);
    let result!: R;
    let outTree!: ReturnType<typeof flattenWithPath>;
    const outs: Tracer[] = [];
    const outSlots: number[] = [];
    body.run(() => {
      const inner = leaves.leaves.map(({ value }) => value);
      for (const a of arrays) inner[a.slot] = body.newInput({ dtype: a.outer.dtype, shape: shardShape(op, mesh, a.spec, a.outer.shape, a.path) }, a.outer.weak);
      result = f(...(unflatten(leaves.treedef, inner) as A));
      outTree = flattenWithPath(result);
      // As with jit, array leaves are outputs and every other leaf is static, returned as it is.
      outTree.leaves.forEach(({ value }, slot) => {
        if (!isArrayLeaf(value)) return;
        outs.push(value instanceof Tracer ? value : asTracer(op, value));
        outSlots.push(slot);
      });
      body.close(outs);
    });

    const outSpecAll = prefixLeaves(opts.outSpecs, result, isSpec, "outSpecs", "PartitionSpec");
    const outPaths = outSlots.map((s) => `output${keystr(outTree.leaves[s]!.path)}`);
    const outSpecs = checkSpecs(op, mesh, outSlots.map((s) => outSpecAll[s]!), outPaths, "outSpecs");
    const captures = body.captures.map((c) => c.outer as Tracer);
    const program = body.toProgram("captures-first");
    const outTypes = outs.map((o, i) => {
      const aval = o.aval;
      const spec = outSpecs[i]!;
      if (spec.length > aval.shape.length) throw traceError(op, `outSpecs for ${outPaths[i]}: ${spec} has ${spec.length} entries for a per-shard result of type ${showAval(aval)}`);
      const shape = aval.shape.map((d, k) => (spec.entries[k] ? d * mesh.axisSize(spec.entries[k]!) : d));
      return { aval: { dtype: aval.dtype, shape }, weak: o.weak };
    });
    const results = bind(
      op,
      [...captures, ...arrays.map((a) => a.outer)],
      {
        body: program,
        mesh: param(mesh.toWire()),
        in_specs: param([...captures.map(() => []), ...arrays.map((a) => a.spec.toWire())]),
        out_specs: param(outSpecs.map((s) => s.toWire())),
        check_vma: checkVma,
      },
      outTypes,
    );
    const back = outTree.leaves.map(({ value }) => value);
    outSlots.forEach((slot, i) => (back[slot] = results[i]));
    return unflatten(outTree.treedef, back) as R;
  };
}

/**
 * `lax.withShardingConstraint(x, sharding)`: ask the compiler to lay `x`
 * (an array or a tree of them; `sharding` a NamedSharding or a tree prefix
 * of `x`) out as the sharding says at this point of the program.
 */
export function withShardingConstraint<T>(x: T, shardings: unknown): T {
  const op = "sharding_constraint";
  const { leaves, treedef } = flattenWithPath(x);
  const per = prefixLeaves(shardings, x, isNamed, "shardings", "NamedSharding");
  const out = leaves.map(({ path, value }, i) => {
    const where = keystr(path) || "the value";
    if (!isArrayLeaf(value)) throw traceError(op, `takes arrays; ${where} is ${describe(value, "kind")}`);
    const s = per[i];
    if (s === null || s === undefined) throw traceError(op, `no sharding for ${where}: give a NamedSharding (the bridge has no mesh context for a bare PartitionSpec)`);
    const t = asTracer(op, value);
    shardShape(op, s.mesh, s.spec, t.shape, where);
    const wire: WireSharding = s.toWire();
    return bind1(op, [t], { sharding: param(wire) }, { dtype: t.dtype, shape: t.shape, weak: t.weak });
  });
  return unflatten(treedef, out) as T;
}
