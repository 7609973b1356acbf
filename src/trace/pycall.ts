/**
 * Calling a remote Python object from a traced TypeScript function:
 * `pyCall(model, x)` inside `jit`, `filterScan` or `filterCond` records one
 * `pycall` equation whose inputs are the model's array leaves and the
 * arguments, so the model's weights are ordinary program inputs (tracers in
 * a scan carry, captured DeviceArrays at the top) and only the non-array
 * leaves (PyRefs, structure keys) are named in the program.
 *
 * Tracing is synchronous, but the output types of a Python method are only
 * known to the sidecar: a call signature traced for the first time throws
 * `PyShapesNeeded`, which jit answers (pycall-shapes.ts). Each new
 * signature costs one extra trace and one round trip, once. Outside any
 * trace a call runs as its own jitted program. See docs/protocol.md
 * "Calling Python from a program" for the template the equation carries.
 */

import { DeviceArray } from "../values/device-array.js";
import { describe } from "../values/describe.js";
import { Module } from "../values/module.js";
import { NDArray } from "../values/ndarray.js";
import { PyRef, RemoteModule } from "../values/remote.js";
import { keystr, type KeyEntry } from "../values/tree.js";
import { asTracer, avalOf, bind, currentTrace, type In, lit, rootTrace } from "./core.js";
import { isJsScalar, scalarType } from "./dtypes.js";
import { traceError } from "./errors.js";
import { canonicalJson, type ParamValue } from "./ir.js";
import { Tracer } from "./tracer.js";
import { jit } from "./jit.js";
import { knownPyShapes, PyShapesNeeded } from "./pycall-shapes.js";
import type { OutputNode, PyCallRequest, TemplateNode } from "../wire/ops.js";

export { PyShapesNeeded, resolvePyShapes } from "./pycall-shapes.js";
export type { OutputNode, PyCallRequest, PyCallShapes, TemplateNode } from "../wire/ops.js";

interface Templates {
  readonly target: TemplateNode;
  readonly args: TemplateNode[];
  /** The equation's inputs: the target's arrays, then the arguments' (JS scalars as literals). */
  readonly ins: In[];
  readonly refs: PyRef[];
  readonly instance: string;
}

/**
 * The templates of a call: the target's and each argument's wire form with
 * arrays replaced by slots. Arguments may hold the same things as the target
 * (another remote module, a PyRef, lists and dicts of arrays) and JS scalars,
 * which become arrays of the default dtype (strong, as numpy scalars are).
 */
function templatesOf(op: string, target: unknown, args: readonly unknown[], x64: boolean): Templates {
  const ins: In[] = [];
  const refs: PyRef[] = [];
  let instance: string | undefined;
  let root = "target";
  const claim = (who: string, where: string): void => {
    if (instance === undefined) instance = who;
    else if (who !== instance) throw traceError(op, `${root}${where} belongs to sidecar ${who || "(closed)"}, the rest of the call to sidecar ${instance || "(closed)"}`);
  };
  const go = (v: unknown, path: KeyEntry[]): TemplateNode => {
    const where = keystr(path);
    if (v === null || v === undefined) return null;
    if (v instanceof Tracer || v instanceof NDArray) {
      ins.push(asTracer(op, v));
      return "array";
    }
    if (v instanceof DeviceArray) {
      if (v.disposed) throw traceError(op, `${root}${where} is ${v.toString()}, which was disposed`);
      claim(v.owner.instance, where);
      ins.push(asTracer(op, v));
      return "array";
    }
    if (isJsScalar(v)) {
      if (root === "target") throw traceError(op, `target${where} is a JS ${typeof v}: a remote target holds what the sidecar sent (arrays, PyRefs, containers, remote modules)`);
      ins.push(lit(v, scalarType(v, x64).dtype, false));
      return "array";
    }
    if (v instanceof PyRef) {
      claim(v.owner.instance, where);
      refs.push(v);
      return { ref: v.id };
    }
    if (v instanceof RemoteModule) {
      const cls = v.constructor as typeof RemoteModule;
      claim(cls.remoteInstance, where);
      // The fields the wire's module node carries (protocol.ts packs the non-static ones).
      const fields = Module.fieldsOf(v)
        .filter((f) => !f.static)
        .map((f) => [f.name, go((v as unknown as Record<string, unknown>)[f.name], [...path, { kind: "attr", name: f.name }])] as const);
      return { module: cls.remoteKey, fields };
    }
    if (Array.isArray(v)) return { list: v.map((x, i) => go(x, [...path, { kind: "index", index: i }])) };
    if (typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
      return { dict: Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, go(x, [...path, { kind: "key", key: k }])] as const) };
    }
    throw traceError(
      op,
      `${root}${where} is ${v instanceof Module ? `a TypeScript ${v.className}` : describe(v, "kind")}: a Python call takes arrays, JS scalars, PyRefs, lists, dicts and remote modules`,
    );
  };
  if (!(target instanceof RemoteModule) && !(target instanceof PyRef)) {
    throw traceError(op, `the target is ${target instanceof Module ? `a TypeScript ${target.className}` : describe(target, "kind")}; pyCall calls a remote equinox module (RemoteModule) or a PyRef`);
  }
  const t = go(target, []);
  const a = args.map((x, i) => {
    root = `args[${i}]`;
    return go(x, []);
  });
  return { target: t, args: a, ins, refs, instance: instance ?? "" };
}

function rebuild(node: OutputNode, outs: readonly Tracer[], at: { i: number }): unknown {
  if (node === null) return null;
  if (node === "array") return outs[at.i++];
  if ("list" in node) return node.list.map((n) => rebuild(n, outs, at));
  if ("tuple" in node) return node.tuple.map((n) => rebuild(n, outs, at));
  const o: Record<string, unknown> = {};
  for (const [k, n] of node.dict) o[k] = rebuild(n, outs, at);
  return o;
}

/** The jitted program that runs a call of `method` outside any trace, one per method name. */
const topLevel = new Map<string, (target: unknown, ...args: unknown[]) => Promise<unknown>>();

/**
 * `target.method(...args)` in the sidecar, from a traced function: the
 * result is the method's output tree (arrays, arrays in lists, tuples as
 * arrays, dicts as objects) of Tracers. `target` is a RemoteModule (its
 * array leaves may be tracers, e.g. a model carried through a scan) or a
 * PyRef. Outside a trace it runs as a one-call jitted program and resolves
 * to DeviceArrays.
 */
export function pyMethod<T = any>(target: RemoteModule | PyRef, method: string, ...args: unknown[]): T {
  const trace = currentTrace();
  const op = `pyCall(${method})`;
  if (trace === undefined) {
    let run = topLevel.get(method);
    if (run === undefined) {
      run = jit((t: unknown, ...a: unknown[]) => pyMethod(t as RemoteModule, method, ...a), { name: op });
      topLevel.set(method, run);
    }
    return run(target, ...args) as T;
  }
  if (typeof method !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(method) || (method.startsWith("_") && method !== "__call__")) {
    throw traceError(op, `method ${JSON.stringify(method)}: only public methods and __call__ can be called`);
  }
  const t = templatesOf(op, target, args, trace.x64);
  const request: PyCallRequest = { target: t.target, args: t.args, method, arrays: t.ins.map(avalOf) };
  const key = `${t.instance}\u0000${canonicalJson(request)}`;
  const known = knownPyShapes(key);
  if (known === undefined) throw new PyShapesNeeded(t.instance, request, key);
  const outs = bind(
    "pycall",
    t.ins,
    { target: { object: t.target, args: t.args } as unknown as ParamValue, method, out: known.tree as unknown as ParamValue },
    known.outputs.map((o) => ({ aval: { dtype: o.dtype, shape: o.shape }, weak: o.weak })),
  );
  // The program names these ids: keep them alive as long as the program is.
  const root = rootTrace();
  for (const r of t.refs) root?.keep.add(r);
  return rebuild(known.tree, outs, { i: 0 }) as T;
}

/** `target(...args)`: `pyMethod(target, "__call__", ...args)`. */
export function pyCall<T = any>(target: RemoteModule | PyRef, ...args: unknown[]): T {
  return pyMethod<T>(target, "__call__", ...args);
}
