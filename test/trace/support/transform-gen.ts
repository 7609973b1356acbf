/**
 * Generated cases for JAX's transformations: one description renders both a
 * TypeScript function (jnp/nn/random on tracers, filterScan, filterCond,
 * checkpoint) and its Python twin (jax.numpy, lax.scan, lax.cond,
 * jax.checkpoint), and a transformation applied to both (grad with
 * argnums, value_and_grad with aux, jvp, vjp, linearize, jacfwd, jacrev,
 * hessian, vmap, nested ones, custom rules). The oracle runs both under
 * jax.jit and compares the outputs bit for bit.
 */
import type { DType } from "../../../src/values/dtype.js";
import type { NDArray } from "../../../src/values/ndarray.js";
import { flatten } from "../../../src/values/tree.js";
import { jnp, nn, random } from "../../../src/trace/lib/index.js";
import * as T from "../../../src/trace/lib/transforms.js";
import { filterCond, filterScan } from "../../../src/lerax/filter.js";
import type { Tracer } from "../../../src/trace/tracer.js";
import type { Case } from "./cases.js";
import { pick, randInt, randomArray } from "./oracle.js";

type Rand = () => number;
type Env = Record<string, Tracer>;

/** An array expression: TypeScript on named tracers, Python on the same names. */
export interface Expr {
  ts: (env: Env) => Tracer;
  py: string;
  /** The kinds of node it holds (coverage). */
  kinds: Set<string>;
}

export interface GenOptions {
  dtype: DType;
  /** Holomorphic operations only (complex cases). */
  complex: boolean;
  /** The shape every variable has. */
  shape: number[];
  /** A square matrix variable `m` ([n, n] with n the last dimension) to multiply by. */
  matrix: boolean;
  /** A key variable `k` (uint32[2]) for random samples. */
  key: boolean;
  x64: boolean;
}

const leaf = (name: string): Expr => ({ ts: (e) => e[name]!, py: name, kinds: new Set() });
const join = (k: string, ...xs: Expr[]): Set<string> => new Set([k, ...xs.flatMap((x) => [...x.kinds])]);

function pyShape(s: readonly number[]): string {
  return s.length === 1 ? `(${s[0]},)` : `(${s.join(", ")})`;
}
const pyBool = (b: boolean): string => (b ? "True" : "False");

/** A random expression of the variables' shape and dtype. */
export function genExpr(r: Rand, vars: readonly string[], o: GenOptions, depth: number): Expr {
  const sub = (d = depth - 1, vs = vars) => genExpr(r, vs, o, d);
  if (depth <= 0 || r() < 0.2) return leaf(pick(r, vars));
  const u = r();
  if (o.complex) {
    // Holomorphic operations only.
    const a = sub();
    if (u < 0.25) return { ts: (e) => jnp.sin(a.ts(e)), py: `jnp.sin(${a.py})`, kinds: join("sin", a) };
    if (u < 0.4) return { ts: (e) => jnp.exp(a.ts(e).mul(0.25)), py: `jnp.exp(${a.py} * 0.25)`, kinds: join("exp", a) };
    const b = sub();
    if (u < 0.65) return { ts: (e) => jnp.multiply(a.ts(e), b.ts(e)), py: `(${a.py} * ${b.py})`, kinds: join("mul", a, b) };
    if (u < 0.85) return { ts: (e) => jnp.add(a.ts(e), b.ts(e).mul(0.5)), py: `(${a.py} + ${b.py} * 0.5)`, kinds: join("add", a, b) };
    return { ts: (e) => jnp.subtract(a.ts(e), jnp.sum(b.ts(e)).mul(0.125)), py: `(${a.py} - jnp.sum(${b.py}) * 0.125)`, kinds: join("sum", a, b) };
  }
  if (u < 0.3) {
    const a = sub();
    const un: [string, (t: Tracer) => Tracer, (p: string) => string][] = [
      ["sin", (t) => jnp.sin(t), (p) => `jnp.sin(${p})`],
      ["tanh", (t) => jnp.tanh(t), (p) => `jnp.tanh(${p})`],
      ["exp", (t) => jnp.exp(t.mul(0.3)), (p) => `jnp.exp(${p} * 0.3)`],
      ["log1p", (t) => jnp.log1p(t.mul(t)), (p) => `(lambda t_: jnp.log1p(t_ * t_))(${p})`],
      ["sqrt", (t) => jnp.sqrt(t.mul(t).add(1.5)), (p) => `(lambda t_: jnp.sqrt(t_ * t_ + 1.5))(${p})`],
      ["relu", (t) => nn.relu(t), (p) => `jax.nn.relu(${p})`],
      ["softplus", (t) => nn.softplus(t), (p) => `jax.nn.softplus(${p})`],
      ["sigmoid", (t) => nn.sigmoid(t), (p) => `jax.nn.sigmoid(${p})`],
      ["square", (t) => jnp.square(t), (p) => `jnp.square(${p})`],
      ["abs", (t) => jnp.abs(t), (p) => `jnp.abs(${p})`],
      ["softmax", (t) => nn.softmax(t), (p) => `jax.nn.softmax(${p})`],
      ["logSoftmax", (t) => nn.logSoftmax(t), (p) => `jax.nn.log_softmax(${p})`],
      ["gelu", (t) => nn.gelu(t), (p) => `jax.nn.gelu(${p})`],
    ];
    const [k, f, p] = pick(r, un);
    return { ts: (e) => f(a.ts(e)), py: p(a.py), kinds: join(k, a) };
  }
  if (u < 0.55) {
    const a = sub();
    const b = sub();
    const bin: [string, (x: Tracer, y: Tracer) => Tracer, (x: string, y: string) => string][] = [
      ["add", (x, y) => jnp.add(x, y), (x, y) => `(${x} + ${y})`],
      ["sub", (x, y) => jnp.subtract(x, y), (x, y) => `(${x} - ${y})`],
      ["mul", (x, y) => jnp.multiply(x, y), (x, y) => `(${x} * ${y})`],
      ["maximum", (x, y) => jnp.maximum(x, y), (x, y) => `jnp.maximum(${x}, ${y})`],
      ["where", (x, y) => jnp.where(x.gt(0), x, y), (x, y) => `(lambda x_, y_: jnp.where(x_ > 0, x_, y_))(${x}, ${y})`],
      ["div", (x, y) => jnp.divide(x, y.mul(y).add(1.5)), (x, y) => `(lambda x_, y_: x_ / (y_ * y_ + 1.5))(${x}, ${y})`],
      ["sumscale", (x, y) => x.mul(jnp.sum(y)), (x, y) => `(${x} * jnp.sum(${y}))`],
      ["meanshift", (x, y) => x.sub(jnp.mean(y)), (x, y) => `(${x} - jnp.mean(${y}))`],
      ["logsumexp", (x, y) => x.add(nn.logsumexp(y)), (x, y) => `(${x} + jax.nn.logsumexp(${y}))`],
    ];
    const [k, f, p] = pick(r, bin);
    return { ts: (e) => f(a.ts(e), b.ts(e)), py: p(a.py, b.py), kinds: join(k, a, b) };
  }
  if (u < 0.62 && o.matrix) {
    const a = sub();
    return { ts: (e) => jnp.matmul(a.ts(e), e.m!), py: `(${a.py} @ m)`, kinds: join("matmul", a) };
  }
  if (u < 0.68 && o.key) {
    const a = sub();
    return {
      ts: (e) => a.ts(e).mul(random.normal(e.k!, o.shape, { dtype: o.dtype })),
      py: `(${a.py} * jax.random.normal(k, ${pyShape(o.shape)}, jnp.${o.dtype}))`,
      kinds: join("random", a),
    };
  }
  if (u < 0.78) {
    // filterScan over a carry, closing over the outer variables.
    const x = sub();
    const c = `c${depth}`;
    const body = sub(depth - 1, [...vars, c]);
    const length = randInt(r, 1, 3);
    const reverse = r() < 0.4;
    const unroll = pick(r, [1, 2, true] as const);
    return {
      ts: (e) => {
        const [carry, ys] = filterScan((cc: Tracer) => [body.ts({ ...e, [c]: cc }), jnp.sum(cc)] as const, x.ts(e), null, { length, reverse, unroll });
        return (carry as Tracer).add(jnp.sum(ys as Tracer));
      },
      py: `(lambda r_: r_[0] + jnp.sum(r_[1]))(lax.scan(lambda ${c}, _: (${body.py}, jnp.sum(${c})), ${x.py}, None, length=${length}, reverse=${pyBool(reverse)}, unroll=${unroll === true ? "True" : unroll}))`,
      kinds: join(`scan${reverse ? " reverse" : ""}${unroll !== 1 ? " unroll" : ""}`, x, body),
    };
  }
  if (u < 0.88) {
    // filterCond on the sign of a sum; the branches close over the outer variables.
    const x = sub();
    const v = `u${depth}`;
    const t = sub(depth - 1, [...vars, v]);
    const f = sub(depth - 1, [...vars, v]);
    return {
      ts: (e) => {
        const xv = x.ts(e);
        return filterCond(jnp.sum(xv).gt(0), (uu: Tracer) => t.ts({ ...e, [v]: uu }), (uu: Tracer) => f.ts({ ...e, [v]: uu }), xv);
      },
      py: `(lambda x_: lax.cond(jnp.sum(x_) > 0, lambda ${v}: ${t.py}, lambda ${v}: ${f.py}, x_))(${x.py})`,
      kinds: join("cond", x, t, f),
    };
  }
  {
    // checkpoint with a policy.
    const x = sub();
    const v = `q${depth}`;
    const b = sub(depth - 1, [...vars, v]);
    const policy = pick(r, o.complex ? ([null, "nothing_saveable", "dots_saveable"] as const) : ([null, "nothing_saveable", "dots_saveable", "everything_saveable"] as const));
    return {
      ts: (e) => T.checkpoint((qq: Tracer) => b.ts({ ...e, [v]: qq }), { policy })(x.ts(e)) as unknown as Tracer,
      py: `jax.checkpoint(lambda ${v}: ${b.py}${policy ? `, policy=jax.checkpoint_policies.${policy}` : ""})(${x.py})`,
      kinds: join("checkpoint", x, b),
    };
  }
}

// --- cases -------------------------------------------------------------------------------------

export interface GenCase extends Case {
  kinds: Set<string>;
}

/** A scalar reduction of an expression: what grad differentiates. */
function reduce(r: Rand, e: Expr, complex: boolean): Expr {
  const u = r();
  if (complex || u < 0.5) return { ts: (env) => jnp.sum(e.ts(env)), py: `jnp.sum(${e.py})`, kinds: e.kinds };
  if (u < 0.75) return { ts: (env) => jnp.mean(jnp.square(e.ts(env))), py: `jnp.mean(jnp.square(${e.py}))`, kinds: e.kinds };
  return { ts: (env) => nn.logsumexp(e.ts(env)), py: `jax.nn.logsumexp(${e.py})`, kinds: e.kinds };
}

const TRANSFORMS = ["grad", "valueAndGrad", "jvp", "vjp", "linearize", "jacfwd", "jacrev", "hessian", "vmap(grad)", "grad(vmap)", "jacfwd(jacrev)", "grad(grad)", "customJvp", "customVjp", "grad(checkpoint)"] as const;
export type TransformKind = (typeof TRANSFORMS)[number];

/**
 * One generated case: inputs `a0..a{n-1}` (differentiable, shape `shape`),
 * maybe `m` (a matrix) and `k` (a key, never differentiated), an
 * expression of them, and a transformation of it.
 */
export function genCase(r: Rand, o: GenOptions, kind: TransformKind, depth: number): GenCase {
  const n = randInt(r, 1, 3);
  const names = Array.from({ length: n }, (_, i) => `a${i}`);
  const all = [...names, ...(o.matrix ? ["m"] : []), ...(o.key ? ["k"] : [])];
  const diff = [...names, ...(o.matrix ? ["m"] : [])];
  const last = o.shape[o.shape.length - 1]!;
  const arrays: NDArray[] = all.map((v) => {
    if (v === "k") return random.keyData(randInt(r, 0, 1000), o.x64);
    return randomArray(r, o.dtype, v === "m" ? [last, last] : o.shape, { lo: -2, hi: 2 });
  });
  const e = genExpr(r, names, o, depth);
  const env = (xs: readonly Tracer[]): Env => Object.fromEntries(all.map((v, i) => [v, xs[i]!]));
  const sig = all.join(", ");
  const extra = (spec: { dtype?: DType; shape?: number[] }) => randomArray(r, spec.dtype ?? o.dtype, spec.shape ?? o.shape, { lo: -2, hi: 2 });
  // argnums: a non-empty subset of the differentiable positions; sometimes a plain number.
  const positions = diff.map((_, i) => i).filter(() => r() < 0.6);
  if (positions.length === 0) positions.push(randInt(r, 0, diff.length - 1));
  const single = positions.length === 1 && r() < 0.5;
  const argnums: number | number[] = single ? positions[0]! : positions;
  const pyArgnums = single ? String(positions[0]) : `(${positions.join(", ")},)`;
  const holo = o.complex ? { holomorphic: true } : {};
  const pyHolo = o.complex ? ", holomorphic=True" : "";
  const red = reduce(r, e, o.complex);
  const F = (xs: Tracer[]) => red.ts(env(xs));
  const E = (xs: Tracer[]) => e.ts(env(xs));
  const pyF = `lambda ${sig}: ${red.py}`;
  const pyE = `lambda ${sig}: ${e.py}`;
  const desc = `${kind} ${o.dtype}${JSON.stringify(o.shape)} of ${e.py}`;
  const out = (x: unknown) => flatten(x).leaves as Tracer[];
  const base = { desc, kinds: new Set([kind, ...e.kinds]) };
  const argsPy = all.map((_, i) => `x${i}`).join(", ");
  // The primals of jvp/vjp/linearize are the differentiable inputs; the key is closed over.
  const pIdx = diff.map((_, i) => i);
  const closeKey = (xs: Tracer[], ps: Tracer[]): Tracer[] => all.map((v, i) => (v === "k" ? xs[i]! : ps[i]!));
  const pyClosed = `lambda ${diff.join(", ")}: ${e.py}`;
  const keyBind = (body: string) => (o.key ? `(lambda k: ${body})(x${all.length - 1})` : body);
  switch (kind) {
    case "grad":
      return { ...base, args: arrays, ts: (xs) => out(T.grad((...a: Tracer[]) => F(a), { argnums, ...holo })(...xs)), py: `jax.grad(${pyF}, argnums=${pyArgnums}${pyHolo})(${argsPy})` };
    case "valueAndGrad":
      return {
        ...base,
        args: arrays,
        ts: (xs) => out(T.valueAndGrad((...a: Tracer[]) => [F(a), E(a)], { argnums, hasAux: true, ...holo })(...xs)),
        py: `jax.value_and_grad(lambda ${sig}: (${red.py}, ${e.py}), argnums=${pyArgnums}, has_aux=True${pyHolo})(${argsPy})`,
      };
    case "jvp": {
      const tangents = pIdx.map((i) => extra({ shape: [...arrays[i]!.shape] }));
      const nt = tangents.length;
      return {
        ...base,
        args: [...arrays, ...tangents],
        ts: (xs) => {
          const ps = xs.slice(0, pIdx.length);
          const ts = xs.slice(all.length, all.length + nt);
          return out(T.jvp((...p: Tracer[]) => E(closeKey(xs, p)), ps as never, ts));
        },
        py: keyBind(`jax.jvp(${pyClosed}, (${pIdx.map((i) => `x${i}`).join(", ")},), (${tangents.map((_, j) => `x${all.length + j}`).join(", ")},))`),
      };
    }
    case "vjp": {
      const ct = extra({});
      return {
        ...base,
        args: [...arrays, ct],
        ts: (xs) => {
          const ps = xs.slice(0, pIdx.length);
          const [o1, pull] = T.vjp((...p: Tracer[]) => E(closeKey(xs, p)), ...(ps as never[])) as unknown as [Tracer, (c: unknown) => unknown[]];
          return out([o1, pull(xs[all.length]!)]);
        },
        py: keyBind(`(lambda r_: (r_[0], r_[1](x${all.length})))(jax.vjp(${pyClosed}, ${pIdx.map((i) => `x${i}`).join(", ")}))`),
      };
    }
    case "linearize": {
      const tangents = pIdx.map((i) => extra({ shape: [...arrays[i]!.shape] }));
      return {
        ...base,
        args: [...arrays, ...tangents],
        ts: (xs) => {
          const ps = xs.slice(0, pIdx.length);
          const [o1, f] = T.linearize((...p: Tracer[]) => E(closeKey(xs, p)), ...(ps as never[])) as unknown as [Tracer, (...t: unknown[]) => unknown];
          return out([o1, f(...xs.slice(all.length))]);
        },
        py: keyBind(`(lambda r_: (r_[0], r_[1](${tangents.map((_, j) => `x${all.length + j}`).join(", ")})))(jax.linearize(${pyClosed}, ${pIdx.map((i) => `x${i}`).join(", ")}))`),
      };
    }
    case "jacfwd":
    case "jacrev":
      return { ...base, args: arrays, ts: (xs) => out(T[kind]((...a: Tracer[]) => E(a), { argnums, ...holo })(...xs)), py: `jax.${kind}(${pyE}, argnums=${pyArgnums}${pyHolo})(${argsPy})` };
    case "hessian":
      return { ...base, args: arrays, ts: (xs) => out(T.hessian((...a: Tracer[]) => F(a), { argnums, ...holo })(...xs)), py: `jax.hessian(${pyF}, argnums=${pyArgnums}${pyHolo})(${argsPy})` };
    case "jacfwd(jacrev)":
      return {
        ...base,
        args: arrays,
        ts: (xs) => out(T.jacfwd(T.jacrev((...a: Tracer[]) => F(a), { argnums, ...holo }), { argnums, ...holo })(...xs)),
        py: `jax.jacfwd(jax.jacrev(${pyF}, argnums=${pyArgnums}${pyHolo}), argnums=${pyArgnums}${pyHolo})(${argsPy})`,
      };
    case "grad(grad)": {
      // The inner gradient (of one argument) summed, differentiated again.
      const a0 = positions[0]!;
      return {
        ...base,
        args: arrays,
        ts: (xs) => out(T.grad((...a: Tracer[]) => jnp.sum(T.grad((...b: Tracer[]) => F(b), { argnums: a0, ...holo })(...a) as unknown as Tracer), { argnums, ...holo })(...xs)),
        py: `jax.grad(lambda ${sig}: jnp.sum(jax.grad(${pyF}, argnums=${a0}${pyHolo})(${sig})), argnums=${pyArgnums}${pyHolo})(${argsPy})`,
      };
    }
    case "vmap(grad)":
    case "grad(vmap)": {
      // Some inputs get a batch axis (at 0 or at the end), the others are broadcast.
      const B = 2;
      const axes: (number | null)[] = all.map((v) => (v === "k" ? null : r() < 0.6 ? pick(r, [0, -1]) : null));
      if (!axes.some((a) => a !== null)) axes[0] = 0;
      const batched = arrays.map((a, i) => {
        const ax = axes[i];
        if (ax === null || ax === undefined) return a;
        const shape = [...a.shape];
        shape.splice(ax === 0 ? 0 : shape.length, 0, B);
        return extra({ shape, dtype: a.dtype });
      });
      const inAxes = axes.map((a) => (a === null || a === undefined ? null : a));
      const pyAxes = `(${inAxes.map((a) => (a === null ? "None" : String(a))).join(", ")},)`;
      if (kind === "vmap(grad)") {
        return {
          ...base,
          args: batched,
          ts: (xs) => out(T.vmap(T.grad((...a: Tracer[]) => F(a), { argnums, ...holo }), { inAxes })(...xs)),
          py: `jax.vmap(jax.grad(${pyF}, argnums=${pyArgnums}${pyHolo}), in_axes=${pyAxes})(${argsPy})`,
        };
      }
      // grad of a sum over the batch, with respect to the differentiable positions.
      return {
        ...base,
        args: batched,
        ts: (xs) => out(T.grad((...a: Tracer[]) => jnp.sum(T.vmap((...b: Tracer[]) => F(b), { inAxes })(...a) as unknown as Tracer), { argnums, ...holo })(...xs)),
        py: `jax.grad(lambda ${sig}: jnp.sum(jax.vmap(${pyF}, in_axes=${pyAxes})(${sig})), argnums=${pyArgnums}${pyHolo})(${argsPy})`,
      };
    }
    case "customJvp": {
      // A custom JVP whose tangent is a generated expression of the primal times the tangent.
      const d = genExpr(r, ["p"], { ...o, matrix: false, key: false }, 1);
      return {
        ...base,
        args: arrays,
        ts: (xs) => {
          const f = T.customJvp(
            (p: Tracer) => jnp.sin(p),
            ([p]: Tracer[], [t]: unknown[]) => [jnp.sin(p!), d.ts({ p: p! }).mul(t as Tracer)],
          );
          return out(T.grad((...a: Tracer[]) => red.ts({ ...env(a), a0: f(env(a).a0!) as unknown as Tracer }), { argnums, ...holo })(...xs));
        },
        py: `(lambda f: jax.grad(lambda ${sig}: (lambda a0: ${red.py})(f(a0)), argnums=${pyArgnums}${pyHolo})(${argsPy}))((lambda f: (f.defjvp(lambda ps, ts: (jnp.sin(ps[0]), (lambda p: ${d.py})(ps[0]) * ts[0])), f)[1])(jax.custom_jvp(jnp.sin)))`,
        kinds: new Set([...base.kinds, ...d.kinds]),
      };
    }
    case "customVjp": {
      const d = genExpr(r, ["p"], { ...o, matrix: false, key: false }, 1);
      return {
        ...base,
        args: arrays,
        ts: (xs) => {
          const f = T.customVjp(
            (p: Tracer) => jnp.sin(p),
            (p: Tracer) => [jnp.sin(p), [p, jnp.cos(p)]],
            (res: Tracer[], g: Tracer) => [d.ts({ p: res[0]! }).mul(g).add(res[1]!)],
          );
          return out(T.grad((...a: Tracer[]) => red.ts({ ...env(a), a0: f(env(a).a0!) as unknown as Tracer }), { argnums, ...holo })(...xs));
        },
        py: `(lambda f: jax.grad(lambda ${sig}: (lambda a0: ${red.py})(f(a0)), argnums=${pyArgnums}${pyHolo})(${argsPy}))((lambda f: (f.defvjp(lambda p: (jnp.sin(p), (p, jnp.cos(p))), lambda res, g: ((lambda p: ${d.py})(res[0]) * g + res[1],)), f)[1])(jax.custom_vjp(jnp.sin)))`,
        kinds: new Set([...base.kinds, ...d.kinds]),
      };
    }
    case "grad(checkpoint)": {
      // (JAX itself fails on complex values under everything_saveable: reduce_precision refuses complex64.)
      const policy = pick(r, o.complex ? ([null, "nothing_saveable", "dots_saveable", "checkpoint_dots"] as const) : ([null, "nothing_saveable", "dots_saveable", "everything_saveable", "checkpoint_dots"] as const));
      return {
        ...base,
        args: arrays,
        ts: (xs) => out(T.grad(T.checkpoint((...a: Tracer[]) => F(a), { policy }), { argnums, ...holo })(...xs)),
        py: `jax.grad(jax.checkpoint(${pyF}${policy ? `, policy=jax.checkpoint_policies.${policy}` : ""}), argnums=${pyArgnums}${pyHolo})(${argsPy})`,
        kinds: new Set([...base.kinds, "checkpoint"]),
      };
    }
  }
}

/** `count` cases cycling through the transformations, with shapes and options drawn at random. */
export function genCases(r: Rand, count: number, base: { dtype: DType; x64: boolean; complex?: boolean }, kinds: readonly TransformKind[] = TRANSFORMS): GenCase[] {
  const cases: GenCase[] = [];
  for (let i = 0; i < count; i++) {
    const kind = kinds[i % kinds.length]!;
    const small = kind === "hessian" || kind === "jacfwd(jacrev)" || kind.startsWith("jac");
    const shape = small ? pick(r, [[2], [3], [2, 2]]) : pick(r, [[3], [4], [2, 3]]);
    const complex = base.complex ?? false;
    const o: GenOptions = { dtype: base.dtype, complex, shape, matrix: !complex && r() < 0.3, key: !complex && r() < 0.25, x64: base.x64 };
    cases.push(genCase(r, o, kind, randInt(r, 1, 2)));
  }
  return cases;
}

export { TRANSFORMS };
