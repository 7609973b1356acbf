/**
 * Which values of a program depend on which inputs: what a transformation
 * must know at trace time to raise JAX's errors where JAX raises them
 * (reverse mode through a `while` loop, a batched output with `out_axes`
 * null) instead of after a round trip to the sidecar.
 *
 * Two kinds of flow, as JAX's interpreters see them:
 *
 * - `tangent`: a value carries a nonzero tangent. Only inexact values do
 *   (integers and bools have float0 tangents, JAX's symbolic zeros), and a
 *   few primitives have a zero derivative everywhere (`floor`, `round`,
 *   `sign`, `stop_gradient`, ...), so their outputs carry none.
 * - `batch`: a value has the batch axis of `vmap`. Any output of an
 *   equation with a batched input is batched.
 *
 * The analysis walks sub-programs as JAX's rules do: both branches of a
 * `cond`, a `scan` or `while` carry until it stops changing, and the bodies
 * of nested transformations (whose inputs start with the equation's own).
 * It never computes a value and reads only the IR.
 */

import { isInexact } from "../values/dtype.js";
import type { Eqn, Operand, SubProgram } from "./ir.js";
import { isSubProgram } from "./ir.js";

export type Flow = "tangent" | "batch";

/** Primitives whose derivative is zero everywhere (JAX: `ad.defjvp_zero`, `stop_gradient`). */
const ZERO_DERIVATIVE = new Set(["floor", "ceil", "round", "sign", "stop_gradient", "is_finite"]);

/** Transformations whose body JAX transposes when it runs: reverse mode. */
export const REVERSE_MODE = new Set(["grad", "value_and_grad", "vjp", "jacrev", "hessian"]);

/** Raised (by the caller's `onWhile`) when reverse mode would have to transpose a `while`. */
export const WHILE_REVERSE_MESSAGE =
  "Reverse-mode differentiation does not work for lax.while_loop or lax.fori_loop with dynamic start/stop values. " +
  "Try using lax.scan, or using fori_loop with static start/stop.";

export interface FlowOptions {
  /**
   * Called for each `while` equation whose carry receives the flow (in
   * `tangent` mode: a loop reverse mode would have to transpose). `where`
   * names the equation's place, e.g. `scan body > cond branch 1 > eqns[3]`.
   */
  onWhile?: (where: string) => void;
}

/** Whether each output of `sub` receives the flow, given which of its inputs do. */
export function flowsTo(sub: SubProgram, inputs: readonly boolean[], mode: Flow, opts: FlowOptions = {}, where = ""): boolean[] {
  const flags: boolean[] = [...inputs];
  while (flags.length < sub.inputs.length) flags.push(false);
  const at = (o: Operand): boolean => (typeof o === "number" ? (flags[o] ?? false) : false);
  sub.eqns.forEach((e, k) => {
    const ins = e.inputs.map(at);
    const outs = eqnFlow(e, ins, mode, opts, `${where}${where ? " > " : ""}eqns[${k}] (${e.prim})`);
    flags.push(...outs);
  });
  return sub.outputs.map(at);
}

function eqnFlow(e: Eqn, ins: readonly boolean[], mode: Flow, opts: FlowOptions, where: string): boolean[] {
  const any = ins.some(Boolean);
  const carries = (i: number): boolean => mode === "batch" || isInexact(e.outputs[i]!.dtype);
  const p = e.params as Record<string, unknown>;
  switch (e.prim) {
    case "cond": {
      const branches = p.branches as SubProgram[];
      const out = e.outputs.map(() => false);
      branches.forEach((b, i) => {
        const r = flowsTo(b, ins.slice(1), mode, opts, `${where} > branch ${i}`);
        r.forEach((f, j) => (out[j] = out[j]! || f));
      });
      // A batched predicate batches every output (JAX turns the cond into a select).
      if (mode === "batch" && ins[0]) return out.map(() => true);
      return out.map((f, j) => f && carries(j));
    }
    case "scan": {
      const nc = p.num_consts as number;
      const nk = p.num_carry as number;
      const body = p.body as SubProgram;
      const consts = ins.slice(0, nc);
      let carry = ins.slice(nc, nc + nk);
      const xs = ins.slice(nc + nk);
      let r: boolean[];
      for (;;) {
        r = flowsTo(body, [...consts, ...carry, ...xs], mode, {}, `${where} > body`);
        const next = carry.map((c, i) => c || r[i]!);
        if (next.every((c, i) => c === carry[i])) break;
        carry = next;
      }
      flowsTo(body, [...consts, ...carry, ...xs], mode, opts, `${where} > body`);
      return [...carry, ...r.slice(nk)].map((f, j) => f && carries(j));
    }
    case "while": {
      const cn = p.cond_nconsts as number;
      const bn = p.body_nconsts as number;
      const body = p.body as SubProgram;
      const bconsts = ins.slice(cn, cn + bn);
      let carry = ins.slice(cn + bn).map((f, j) => f && carries(j));
      for (;;) {
        const r = flowsTo(body, [...bconsts, ...carry], mode, {}, `${where} > body`);
        const next = carry.map((c, j) => c || (r[j]! && carries(j)));
        if (next.every((c, i) => c === carry[i])) break;
        carry = next;
      }
      if (mode === "tangent" && carry.some(Boolean)) opts.onWhile?.(where);
      flowsTo(body, [...bconsts, ...carry], mode, opts, `${where} > body`);
      // A batched cond_fun makes every carry batched.
      if (mode === "batch" && ins.slice(0, cn).some(Boolean)) return carry.map(() => true);
      return carry;
    }
    default: {
      if (mode === "tangent" && ZERO_DERIVATIVE.has(e.prim)) return e.outputs.map(() => false);
      // Nested transformations: look inside for loops (their first inputs are the body's).
      const body = p.body;
      if (isSubProgram(body) && any) flowsTo(body, ins.slice(0, body.inputs.length), mode, opts, `${where} > body`);
      return e.outputs.map((_, j) => any && carries(j));
    }
  }
}
