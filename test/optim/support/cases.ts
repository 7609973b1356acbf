/**
 * Generated optimizer cases, described as JSON both sides build from:
 * test/optim/support/optax_oracle.py builds them with optax, `buildOpt`
 * here with jaxbridge's `optax`. A case is an optimizer (any of the six,
 * with generated hyperparameters and sometimes a schedule or a gradient
 * clip in front), a parameter tree (dicts and lists of float32/float64
 * arrays) and a few gradient trees of the same shape.
 */

import type { DType } from "../../../src/values/dtype.js";
import { NDArray } from "../../../src/values/ndarray.js";
import * as optax from "../../../src/optim/index.js";
import { fromWire, pick, randInt, rng, toWire, type WireArray } from "../../trace/support/oracle.js";

export type LrSpec = number | { schedule: string; kw?: Record<string, unknown>; parts?: LrSpec[]; boundaries?: number[] };
export type OptSpec =
  | { name: "chain"; parts: OptSpec[] }
  | { name: "clip_by_global_norm"; max_norm: number }
  | { name: "sgd" | "adam" | "adamw" | "rmsprop" | "adagrad" | "lion"; lr: LrSpec; kw: Record<string, unknown> };
export type TreeSpec = { dict: Record<string, TreeSpec> } | { list: TreeSpec[] } | WireArray;

export interface Case {
  seed: number;
  opt: OptSpec;
  params: TreeSpec;
  grads: TreeSpec[];
}

const camel = (s: string): string => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
const camelKw = (kw: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(kw).map(([k, v]) => [camel(k), isSchedule(v) ? buildLr(v as LrSpec) : v]));
const isSchedule = (v: unknown): boolean => typeof v === "object" && v !== null && "schedule" in v;

export function buildLr(spec: LrSpec): optax.ScalarOrSchedule {
  if (typeof spec === "number") return spec;
  if (spec.schedule === "join_schedules") return optax.joinSchedules(spec.parts!.map((p) => buildLr(p) as optax.Schedule), spec.boundaries!);
  const kw = camelKw(spec.kw ?? {});
  if (spec.schedule === "constant_schedule") return optax.constantSchedule(kw.value as number);
  const f = (optax as unknown as Record<string, (o: unknown) => optax.Schedule>)[camel(spec.schedule)];
  if (!f) throw new Error(`no schedule ${spec.schedule}`);
  return f(kw);
}

export function buildOpt(spec: OptSpec): optax.GradientTransformation {
  switch (spec.name) {
    case "chain":
      return optax.chain(...spec.parts.map(buildOpt));
    case "clip_by_global_norm":
      return optax.clipByGlobalNorm(spec.max_norm);
    default: {
      const f = (optax as unknown as Record<string, (lr: unknown, o: unknown) => optax.GradientTransformation>)[spec.name]!;
      return f(buildLr(spec.lr), camelKw(spec.kw));
    }
  }
}

export function buildTree(t: TreeSpec): unknown {
  if ("dict" in t) return Object.fromEntries(Object.entries(t.dict).map(([k, v]) => [k, buildTree(v)]));
  if ("list" in t) return t.list.map(buildTree);
  return fromWire(t);
}

// --- generation -------------------------------------------------------------------------------

type R = () => number;
const logUniform = (r: R, lo: number, hi: number): number => 10 ** (lo + (hi - lo) * r());
const between = (r: R, lo: number, hi: number): number => lo + (hi - lo) * r();

function genSchedule(r: R, steps: number): LrSpec {
  const peak = logUniform(r, -3, -0.5);
  const n = randInt(r, 1, steps + 2);
  switch (randInt(r, 0, 7)) {
    case 0:
      return { schedule: "constant_schedule", kw: { value: peak } };
    case 1:
      return { schedule: "linear_schedule", kw: { init_value: peak, end_value: peak * r(), transition_steps: n, transition_begin: randInt(r, 0, 2) } };
    case 2:
      return { schedule: "polynomial_schedule", kw: { init_value: peak, end_value: peak * r(), power: pick(r, [2, 3, 0.5, 1.5]), transition_steps: n, transition_begin: randInt(r, 0, 2) } };
    case 3:
      return { schedule: "cosine_decay_schedule", kw: { init_value: peak, decay_steps: n, alpha: pick(r, [0, r()]), exponent: pick(r, [1, 2, between(r, 0.5, 3)]) } };
    case 4:
      return {
        schedule: "exponential_decay",
        kw: { init_value: peak, transition_steps: n, decay_rate: between(r, 0.3, 0.99), transition_begin: randInt(r, 0, 2), staircase: r() < 0.5, ...(r() < 0.5 ? { end_value: peak * 0.3 } : {}) },
      };
    case 5:
      return { schedule: "warmup_constant_schedule", kw: { init_value: 0, peak_value: peak, warmup_steps: n } };
    case 6:
      return { schedule: "warmup_cosine_decay_schedule", kw: { init_value: peak * 0.1, peak_value: peak, warmup_steps: randInt(r, 1, 3), decay_steps: randInt(r, 4, steps + 3), end_value: pick(r, [0, peak * 0.05]), exponent: pick(r, [1, between(r, 0.5, 2)]) } };
    default:
      return { schedule: "join_schedules", parts: [{ schedule: "constant_schedule", kw: { value: peak } }, { schedule: "cosine_decay_schedule", kw: { init_value: peak, decay_steps: n } }], boundaries: [randInt(r, 1, steps)] };
  }
}

function genLr(r: R, steps: number): LrSpec {
  return r() < 0.6 ? logUniform(r, -4, -0.5) : genSchedule(r, steps);
}

function genOptimizer(r: R, steps: number, dtypes: readonly DType[]): OptSpec {
  const lr = genLr(r, steps);
  const muDtype = (): Record<string, unknown> => (r() < 0.2 ? { mu_dtype: pick(r, dtypes) } : {});
  switch (randInt(r, 0, 5)) {
    case 0: {
      const kw: Record<string, unknown> = {};
      if (r() < 0.7) {
        kw.momentum = between(r, 0.1, 0.99);
        kw.nesterov = r() < 0.5;
        if (r() < 0.2) kw.accumulator_dtype = pick(r, dtypes);
      }
      return { name: "sgd", lr, kw };
    }
    case 1:
      return { name: "adam", lr, kw: { b1: between(r, 0.5, 0.99), b2: between(r, 0.9, 0.9999), eps: logUniform(r, -9, -4), eps_root: pick(r, [0, 1e-8]), nesterov: r() < 0.3, ...muDtype() } };
    case 2:
      return {
        name: "adamw",
        lr,
        kw: { b1: between(r, 0.5, 0.99), b2: between(r, 0.9, 0.9999), eps: logUniform(r, -9, -4), weight_decay: r() < 0.3 ? genSchedule(r, steps) : pick(r, [0, logUniform(r, -5, -1)]), nesterov: r() < 0.3, ...muDtype() },
      };
    case 3: {
      const kw: Record<string, unknown> = { decay: between(r, 0.5, 0.99), eps: logUniform(r, -9, -4), initial_scale: pick(r, [0, 0.1]), eps_in_sqrt: r() < 0.5, centered: r() < 0.4, bias_correction: r() < 0.4 };
      if (r() < 0.4) {
        kw.momentum = between(r, 0.1, 0.95);
        kw.nesterov = r() < 0.5;
      }
      return { name: "rmsprop", lr, kw };
    }
    case 4:
      return { name: "adagrad", lr, kw: { initial_accumulator_value: pick(r, [0, 0.1, between(r, 0.01, 1)]), eps: logUniform(r, -9, -4) } };
    default:
      return { name: "lion", lr, kw: { b1: between(r, 0.5, 0.99), b2: between(r, 0.9, 0.999), weight_decay: r() < 0.2 ? genSchedule(r, steps) : pick(r, [0, logUniform(r, -4, -1)]), ...muDtype() } };
  }
}

function genArray(r: R, dtype: DType, shape: number[], scale: number, zeros: boolean): NDArray {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = dtype === "float32" ? new Float32Array(n) : new Float64Array(n);
  for (let i = 0; i < n; i++) {
    // A sum of uniforms is close enough to normal; some exact zeros exercise the `t > 0` and sign paths.
    data[i] = zeros && r() < 0.15 ? 0 : scale * (r() + r() + r() - 1.5) * 2;
  }
  return new NDArray(data, shape, dtype);
}

/** The tree's skeleton: leaves are [dtype, shape]. */
type Skeleton = { dict: Record<string, Skeleton> } | { list: Skeleton[] } | { leaf: [DType, number[]] };

function genSkeleton(r: R, dtypes: readonly DType[], depth = 0): Skeleton {
  const u = r();
  if (depth >= 2 || u < 0.4) {
    const rank = randInt(r, 0, 2);
    return { leaf: [pick(r, dtypes), Array.from({ length: rank }, () => randInt(r, 1, 4))] };
  }
  const n = randInt(r, 1, 3);
  if (u < 0.75) return { dict: Object.fromEntries(Array.from({ length: n }, (_, i) => [pick(r, ["w", "b", "layer", "scale", "z"]) + i, genSkeleton(r, dtypes, depth + 1)])) };
  return { list: Array.from({ length: n }, () => genSkeleton(r, dtypes, depth + 1)) };
}

function fill(r: R, s: Skeleton, scale: number, zeros: boolean): TreeSpec {
  if ("dict" in s) return { dict: Object.fromEntries(Object.entries(s.dict).map(([k, v]) => [k, fill(r, v, scale, zeros)])) };
  if ("list" in s) return { list: s.list.map((v) => fill(r, v, scale, zeros)) };
  return toWire(genArray(r, s.leaf[0], s.leaf[1], scale, zeros));
}

/** `n` cases from `seed`; `x64: false` keeps every array float32. */
export function generateCases(seed: number, n: number, opts: { x64: boolean; steps?: number }): Case[] {
  const out: Case[] = [];
  for (let k = 0; k < n; k++) {
    const caseSeed = seed * 1000 + k;
    const r = rng(caseSeed);
    const steps = opts.steps ?? randInt(r, 3, 5);
    const dtypes: DType[] = opts.x64 ? pick(r, [["float32"], ["float64"], ["float32", "float64"]] as DType[][]) : ["float32"];
    let opt = genOptimizer(r, steps, dtypes);
    if (r() < 0.25) opt = { name: "chain", parts: [{ name: "clip_by_global_norm", max_norm: logUniform(r, -1, 1) }, opt] };
    const skeleton = genSkeleton(r, dtypes);
    const params = fill(r, skeleton, 1, false);
    const grads = Array.from({ length: steps }, () => fill(r, skeleton, logUniform(r, -3, 0.5), true));
    out.push({ seed: caseSeed, opt, params, grads });
  }
  return out;
}
