/**
 * JAX's transformations beyond the generated oracle: the errors JAX raises
 * (compared with the message JAX itself gives for the same function),
 * pytrees in and out, the top level (a jitted program per signature,
 * DeviceArrays back), debug callbacks inside transformed code (fired as
 * JAX fires them), random keys, and checkpoint names.
 */
import assert from "node:assert/strict";
import { array, type DeviceArray, jit, type NDArray, programStats, type Tracer, TraceError } from "../../../src/index.js";
import { callbackWithListWrapper } from "../../../src/lerax/callbacks.js";
import { filterScan } from "../../../src/lerax/utils.js";
import { jnp, lax, random } from "../../../src/trace/lib/index.js";
import * as T from "../../../src/trace/lib/transforms.js";
import { traceFlat } from "../../../src/trace/trace.js";
import { whileFlat } from "../../../src/trace/lib/control.js";
import { flatten } from "../../../src/values/tree.js";
import { runCases } from "../support/cases.js";
import { Oracle, randomArray, rng } from "../support/oracle.js";
import { useSession } from "../../support/session.js";

process.env.JAXBRIDGE_QUIET = "1";

const oracle = new Oracle();
after(() => oracle.close());

/** The message JAX raises for `code` (Python that raises), from the oracle process. */
async function jaxMessage(code: string, args: NDArray[] = []): Promise<string> {
  const r = await oracle.execTree(false, `${code}\nresult = None`, args);
  assert.equal(r.ok, false, "the Python snippet should raise");
  return (r as { error: string }).error.replace(/^\w+: /, "");
}

/** The TraceError `fn` raises when traced on these types. */
function traceErrorOf(fn: (...xs: Tracer[]) => unknown, types: { dtype: NDArray["dtype"]; shape: number[] }[]): TraceError {
  try {
    traceFlat(fn as never, types, { x64: false });
  } catch (e) {
    assert.ok(e instanceof TraceError, `expected a TraceError, got ${String(e)}`);
    return e;
  }
  assert.fail("expected a TraceError");
}

const f32 = (...shape: number[]) => ({ dtype: "float32" as const, shape });

describe("transformations: errors like JAX's, raised at trace time", function () {
  this.timeout(120000);

  it("grad of a non-scalar output", async () => {
    const want = await jaxMessage("jax.grad(lambda x: x * 2)(jnp.ones(3))");
    const e = traceErrorOf((x) => T.grad((a: Tracer) => a.mul(2))(x), [f32(3)]);
    assert.ok(e.message.includes(want), `${e.message}\n---\n${want}`);
    const want1 = await jaxMessage("jax.grad(lambda x: x * 2)(jnp.ones((1, 1)))");
    assert.ok(traceErrorOf((x) => T.grad((a: Tracer) => a.mul(2))(x), [f32(1, 1)]).message.includes(want1));
  });

  it("grad of an integer input names its pytree path", async () => {
    const want = await jaxMessage("jax.grad(lambda p: jnp.sum(p['w']) * 1.0)({'w': jnp.ones(3, jnp.int32)})");
    const e = traceErrorOf((w) => T.grad((p: { w: Tracer }) => jnp.sum(p.w).mul(1.5))({ w: w }), [{ dtype: "int32", shape: [3] }]);
    assert.ok(e.message.includes(want), `${e.message}\n---\n${want}`);
    assert.match(e.message, /At args\[0\]\['w'\]/);
    // A JS integer is a weak int32, as a Python int is.
    assert.match(traceErrorOf(() => T.grad((a: Tracer) => a.mul(2.5))(3) as never, []).message, /got int32\. .*At args\[0\]/);
  });

  it("grad of an integer or complex output", async () => {
    const wantInt = await jaxMessage("jax.grad(lambda x: jnp.sum(x).astype(jnp.int32))(jnp.ones(3))");
    assert.ok(traceErrorOf((x) => T.grad((a: Tracer) => jnp.sum(a).astype("int32"))(x), [f32(3)]).message.includes(wantInt));
    const wantC = await jaxMessage("jax.grad(lambda x: jnp.sum(x).astype(jnp.complex64))(jnp.ones(3))");
    assert.ok(traceErrorOf((x) => T.grad((a: Tracer) => jnp.sum(a).astype("complex64"))(x), [f32(3)]).message.includes(wantC));
  });

  it("reverse mode through a while loop, also nested in a scan; forward mode through it works", async () => {
    const want = await jaxMessage("jax.grad(lambda x: lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 2.0), (0, x))[1])(1.0)");
    const loop = (a: Tracer) => whileFlat((i) => i.lt(3), (i, c) => [i.add(1), c!.mul(2)], [0, a])[1]!;
    const e = traceErrorOf((x) => T.grad(loop)(x), [f32()]);
    assert.ok(e.message.includes(want), `${e.message}\n---\n${want}`);
    const nested = traceErrorOf((x) => T.grad((a: Tracer) => jnp.sum(filterScan((c: Tracer) => [loop(c), c] as const, a, null, { length: 2 })[0] as Tracer))(x), [f32()]);
    assert.ok(nested.message.includes(want));
    assert.match(nested.message, /scan/);
    // A loop whose carry does not depend on the differentiated input is fine (JAX too).
    traceFlat((x) => T.grad((a: Tracer) => a.mul(whileFlat((i) => i.lt(3), (i) => [i.add(1)], [0])[0]!.astype("float32")))(x) as Tracer, [f32()], { x64: false });
    // Forward mode differentiates through it.
    const r = await oracle.compare(
      (x) => T.jvp(loop, [x], [x]) as never,
      [array(1.5, "float32")],
      "lambda x: jax.jvp(lambda a: lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 2.0), (0, a))[1], (x,), (x,))",
      { x64: false },
    );
    assert.equal(r.mismatch, null);
  });

  it("vmap with inconsistent axis sizes names each argument's path and type, as JAX does", async () => {
    // A JS function's parameter names cannot be read, so every argument is args[i]; JAX names the
    // first parameter of a `*args` function "argument args" and the others args[i].
    const want = (await jaxMessage("jax.vmap(lambda *args: args[0]['a'] + args[1])({'a': jnp.ones(3)}, jnp.ones((4, 2)))")).replace("argument args", "args[0]");
    const e = traceErrorOf((a, b) => T.vmap((p: { a: Tracer }, q: Tracer) => p.a.add(q.get(0)))({ a }, b), [f32(3), f32(4, 2)]);
    assert.ok(e.message.includes(want), `${e.message}\n---\n${want}`);
    const want2 = (await jaxMessage("jax.vmap(lambda *args: args[0] + args[1] + args[2], in_axes=(0, 1, 0))(jnp.ones(3), jnp.ones((2, 3)), jnp.ones(5))")).replace("argument args", "args[0]");
    const e2 = traceErrorOf((a, b, c) => T.vmap((x: Tracer, y: Tracer, z: Tracer) => x.add(y).add(z), { inAxes: [0, 1, 0] })(a, b, c), [f32(3), f32(2, 3), f32(5)]);
    assert.ok(e2.message.includes(want2), `${e2.message}\n---\n${want2}`);
  });

  it("vmap's other errors: rank too small, nothing mapped, a batched output with out_axes null", async () => {
    const want = await jaxMessage("jax.vmap(lambda x: x, in_axes=1)(jnp.ones(3))");
    assert.ok(traceErrorOf((x) => T.vmap((a: Tracer) => a, { inAxes: 1 })(x), [f32(3)]).message.includes(want));
    const none = await jaxMessage("jax.vmap(lambda x: x, in_axes=None)(jnp.ones(3))");
    assert.ok(traceErrorOf((x) => T.vmap((a: Tracer) => a, { inAxes: null })(x), [f32(3)]).message.includes(none));
    const out = await jaxMessage("jax.vmap(lambda x: x * 2, out_axes=None)(jnp.ones(3))");
    assert.ok(traceErrorOf((x) => T.vmap((a: Tracer) => a.mul(2), { outAxes: null })(x), [f32(3)]).message.includes(out));
    const named = await jaxMessage("jax.vmap(lambda x: x * 2, out_axes=None, axis_name='i')(jnp.ones(3))");
    assert.ok(traceErrorOf((x) => T.vmap((a: Tracer) => a.mul(2), { outAxes: null, axisName: "i" })(x), [f32(3)]).message.includes(named));
    // An output that does not depend on the mapped inputs may have out_axes null.
    traceFlat((x, y) => T.vmap((a: Tracer, b: Tracer) => [a.mul(2), b.mul(3)], { inAxes: [0, null], outAxes: [0, null] })(x, y) as never, [f32(3), f32(2)], { x64: false });
    assert.match(traceErrorOf((x) => T.vmap((a: Tracer) => a, { inAxes: [{ w: 0 }] })(x), [f32(3)]).message, /tree prefix/);
  });

  it("jvp and vjp check tangents and cotangents as JAX does", async () => {
    const dt = await jaxMessage("jax.jvp(lambda x: x, (jnp.ones(3),), (jnp.ones(3, jnp.float16),))");
    assert.ok(traceErrorOf((x, t) => T.jvp((a: Tracer) => a, [x], [t.astype("float16")]) as never, [f32(3), f32(3)]).message.includes(dt));
    const sh = await jaxMessage("jax.jvp(lambda x: x, (jnp.ones(3),), (jnp.ones(2),))");
    assert.ok(traceErrorOf((x, t) => T.jvp((a: Tracer) => a, [x], [t]) as never, [f32(3), f32(2)]).message.includes(sh));
    const ct = await jaxMessage("jax.vjp(lambda x: x * 2, jnp.ones(3))[1](jnp.ones(2))");
    const e = traceErrorOf((x, c) => {
      const [, pull] = T.vjp((a: Tracer) => a.mul(2), x) as unknown as [Tracer, (c: unknown) => unknown];
      return pull(c) as never;
    }, [f32(3), f32(2)]);
    assert.ok(e.message.includes(ct), `${e.message}\n---\n${ct}`);
    // An integer primal takes null, JAX's float0.
    const [o, t] = (() => {
      let res: unknown;
      traceFlat((x, n) => {
        res = T.jvp((a: Tracer, k: Tracer) => a.mul(k.astype("float32")), [x, n], [x, null]);
        return flatten(res).leaves as Tracer[];
      }, [f32(3), { dtype: "int32", shape: [3] }], { x64: false });
      return res as [Tracer, Tracer];
    })();
    assert.deepEqual([o.shape, t.shape], [[3], [3]]);
  });

  it("argnums out of range, a missing rule, a tracer used after its transformation", async () => {
    const want = await jaxMessage("jax.grad(lambda x: x, argnums=2)(1.0)");
    assert.ok(traceErrorOf((x) => T.grad((a: Tracer) => a, { argnums: 2 })(x), [f32()]).message.includes(want));
    const g = T.customJvp((a: Tracer) => a);
    assert.match(traceErrorOf((x) => g(x) as never, [f32()]).message, /No JVP defined for custom_jvp function/);
    let escaped: ((c: unknown) => unknown) | undefined;
    traceFlat((x) => {
      const [o, pull] = T.vjp((a: Tracer) => a.mul(2), x) as unknown as [Tracer, (c: unknown) => unknown];
      escaped = pull;
      return o;
    }, [f32(3)], { x64: false });
    assert.throws(() => traceFlat((c) => escaped!(c) as never, [f32(3)], { x64: false }), /outside the traced function that called vjp/);
  });

  it("custom_vjp's bwd must return the arguments' types", () => {
    const f = T.customVjp(
      (a: Tracer) => jnp.sin(a),
      (a: Tracer) => [jnp.sin(a), a],
      (_r: Tracer, g: Tracer) => [jnp.sum(g)],
    );
    assert.match(traceErrorOf((x) => T.grad((a: Tracer) => jnp.sum(f(a) as never))(x), [f32(3)]).message, /Custom VJP bwd rule .* must produce an output with the same type as the args tuple .* float32\[\] corresponding to an input of type float32\[3\]/);
  });
});

describe("transformations: pytrees, nesting, random keys, names", function () {
  this.timeout(300000);

  it("grad and jacobians keep the arguments' and outputs' trees", async () => {
    const r = rng(7);
    const w = randomArray(r, "float32", [2, 3]);
    const b = randomArray(r, "float32", [3]);
    const x = randomArray(r, "float32", [4, 2]);
    const loss = (p: { w: Tracer; b: Tracer }, xs: Tracer) => jnp.mean(jnp.square(jnp.tanh(jnp.matmul(xs, p.w).add(p.b))));
    const pyLoss = "lambda p, xs: jnp.mean(jnp.square(jnp.tanh(xs @ p['w'] + p['b'])))";
    await runCases(
      oracle,
      [
        { desc: "grad of a dict", args: [w, b, x], ts: ([w_, b_, x_]) => flatten(T.grad(loss)({ w: w_!, b: b_! }, x_!)).leaves as Tracer[], py: `jax.grad(${pyLoss})({'w': x0, 'b': x1}, x2)` },
        {
          desc: "valueAndGrad, argnums [1, 0], aux",
          args: [w, b, x],
          ts: ([w_, b_, x_]) => flatten(T.valueAndGrad((p: { w: Tracer; b: Tracer }, xs: Tracer) => [loss(p, xs), { n: jnp.sum(xs) }], { argnums: [1, 0], hasAux: true })({ w: w_!, b: b_! }, x_!)).leaves as Tracer[],
          py: `jax.value_and_grad(lambda p, xs: ((${pyLoss})(p, xs), {'n': jnp.sum(xs)}), argnums=(1, 0), has_aux=True)({'w': x0, 'b': x1}, x2)`,
        },
        {
          desc: "jacrev of a dict output by a list argument",
          args: [b, x],
          ts: ([b_, x_]) => flatten(T.jacrev((l: Tracer[]) => ({ s: jnp.sin(l[0]!), t: jnp.sum(l[1]!) }))([b_!, x_!])).leaves as Tracer[],
          py: "jax.jacrev(lambda l: {'s': jnp.sin(l[0]), 't': jnp.sum(l[1])})([x0, x1])",
        },
        {
          desc: "hessian of two arguments",
          args: [b, b],
          ts: ([p, q]) => flatten(T.hessian((u: Tracer, v: Tracer) => jnp.sum(jnp.sin(u.mul(v))), { argnums: [0, 1] })(p!, q!)).leaves as Tracer[],
          py: "jax.hessian(lambda u, v: jnp.sum(jnp.sin(u * v)), argnums=(0, 1))(x0, x1)",
        },
        {
          desc: "vmap with pytree in_axes and out_axes",
          args: [w, b],
          ts: ([w_, b_]) => flatten(T.vmap((p: { w: Tracer; b: Tracer }) => ({ y: jnp.sum(p.w).add(p.b), z: p.w }), { inAxes: [{ w: 1, b: 0 }], outAxes: { y: 0, z: 1 } })({ w: w_!, b: b_! })).leaves as Tracer[],
          py: "jax.vmap(lambda p: {'y': jnp.sum(p['w']) + p['b'], 'z': p['w']}, in_axes=({'w': 1, 'b': 0},), out_axes={'y': 0, 'z': 1})({'w': x0, 'b': x1})",
        },
        {
          desc: "linearize twice from one forward pass",
          args: [b, b],
          ts: ([p, q]) => {
            const [o, fj] = T.linearize((u: Tracer) => jnp.sin(u).mul(u), p!) as unknown as [Tracer, (t: Tracer) => Tracer];
            return [o, fj(q!), fj(p!)];
          },
          py: "(lambda r: (r[0], r[1](x1), r[1](x0)))(jax.linearize(lambda u: jnp.sin(u) * u, x0))",
        },
        {
          desc: "vjp inside a scan body, pulled back there",
          args: [b],
          ts: ([p]) =>
            filterScan(
              (c: Tracer) => {
                const [o, pull] = T.vjp((u: Tracer) => jnp.tanh(u.mul(c)), c) as unknown as [Tracer, (ct: Tracer) => Tracer[]];
                return [o.add(pull(jnp.onesLike(o))[0]!), jnp.sum(o)] as const;
              },
              p!,
              null,
              { length: 3 },
            ) as never,
          py: "lax.scan(lambda c, _: (lambda r: (r[0] + r[1](jnp.ones_like(r[0]))[0], jnp.sum(r[0])))(jax.vjp(lambda u: jnp.tanh(u * c), c)), x0, None, length=3)",
        },
        {
          desc: "checkpoint_name with save_only_these_names",
          args: [b],
          ts: ([p]) => T.grad((u: Tracer) => jnp.sum(T.checkpoint((v: Tracer) => jnp.sin(T.checkpointName(jnp.sin(v), "s")), { policy: T.checkpointPolicies.save_only_these_names("s") })(u) as Tracer))(p!) as Tracer,
          py: "jax.grad(lambda u: jnp.sum(jax.checkpoint(lambda v: jnp.sin(jax.ad_checkpoint.checkpoint_name(jnp.sin(v), 's')), policy=jax.checkpoint_policies.save_only_these_names('s'))(u)))(x0)",
        },
        {
          desc: "stop_gradient of a pytree",
          args: [b, b],
          ts: ([p, q]) => flatten(T.grad((d: { a: Tracer; b: Tracer }) => jnp.sum(lax.stopGradient(d).a.mul(d.b)))({ a: p!, b: q! })).leaves as Tracer[],
          py: "jax.grad(lambda d: jnp.sum(lax.stop_gradient(d)['a'] * d['b']))({'a': x0, 'b': x1})",
        },
      ],
      false,
      1,
    );
  });

  it("random keys: a gradient through samples, vmap over split keys", async () => {
    const key = random.keyData(42, false);
    const mu = array([0.5, -1, 2], "float32");
    await runCases(
      oracle,
      [
        {
          desc: "reparameterized sample",
          args: [key, mu],
          ts: ([k, m]) => T.grad((u: Tracer) => jnp.sum(jnp.square(u.add(random.normal(k!, [3])))))(m!) as Tracer,
          py: "jax.grad(lambda u: jnp.sum(jnp.square(u + jax.random.normal(x0, (3,)))))(x1)",
        },
        {
          desc: "vmap over split keys",
          args: [key, mu],
          ts: ([k, m]) => T.vmap((kk: Tracer) => random.normal(kk, [3]).mul(m!))(random.split(k!, 4)) as Tracer,
          py: "jax.vmap(lambda kk: jax.random.normal(kk, (3,)) * x1)(jax.random.split(x0, 4))",
        },
        {
          desc: "grad of vmap over keys",
          args: [key, mu],
          ts: ([k, m]) => T.grad((u: Tracer) => jnp.sum(T.vmap((kk: Tracer) => jnp.sin(random.uniform(kk, [3]).mul(u)))(random.split(k!, 5)) as Tracer))(m!) as Tracer,
          py: "jax.grad(lambda u: jnp.sum(jax.vmap(lambda kk: jnp.sin(jax.random.uniform(kk, (3,)) * u))(jax.random.split(x0, 5))))(x1)",
        },
      ],
      false,
      3,
    );
  });
});

describe("transformations at top level and with callbacks (sidecar)", function () {
  this.timeout(300000);
  const jb = useSession();

  it("return DeviceArrays, trace once per signature, and the sidecar compiles once", async () => {
    const loss = (p: { w: Tracer }, x: Tracer) => jnp.sum(jnp.tanh(jnp.matmul(x, p.w)));
    const w = await jb().put(array([[1, 2], [0.5, -1]], "float32"));
    const x = array([[0.25, -0.5]], "float32");
    const vg = T.valueAndGrad(loss);
    const [v, g] = (await vg({ w: w as DeviceArray }, x)) as unknown as [DeviceArray, { w: DeviceArray }];
    assert.equal(v.shape.length, 0);
    assert.deepEqual(g.w.shape, [2, 2]);
    const before = await programStats(jb());
    const [v2] = (await T.valueAndGrad(loss)({ w: w as DeviceArray }, x)) as unknown as [DeviceArray];
    const after = await programStats(jb());
    assert.equal(after.traces, before.traces, "a second call (even through a new valueAndGrad(loss)) compiles nothing");
    assert.deepEqual((await v2.toHost()).toList(), (await v.toHost()).toList());
    const want = await runPythonJit("jax.value_and_grad(lambda p, x: jnp.sum(jnp.tanh(x @ p['w'])))({'w': jnp.array([[1, 2], [0.5, -1]], jnp.float32)}, jnp.array([[0.25, -0.5]], jnp.float32))");
    assert.deepEqual([(await v.toHost()).toList(), (await g.w.toHost()).toList()], want);
  });

  it("vjp and linearize at top level give a pullback / linear map that runs its own program", async () => {
    const x = array([0.5, 1, 2], "float32");
    const [o, pull] = (await T.vjp((a: Tracer) => jnp.sin(a).mul(a), x)) as unknown as [DeviceArray, (ct: unknown) => Promise<DeviceArray[]>];
    const [ct] = await pull(array([1, 1, 1], "float32"));
    const [o2, fj] = (await T.linearize((a: Tracer) => jnp.sin(a).mul(a), x)) as unknown as [DeviceArray, (t: unknown) => Promise<DeviceArray>];
    const t = await fj(array([1, 0, 2], "float32"));
    const want = await runPythonJit("(lambda f, x: (lambda o, p: (o, p(jnp.ones(3))[0], jax.linearize(f, x)[1](jnp.array([1., 0, 2]))))(*jax.vjp(f, x)))(lambda a: jnp.sin(a) * a, jnp.array([0.5, 1, 2], jnp.float32))");
    assert.deepEqual([(await o.toHost()).toList(), (await ct!.toHost()).toList(), (await t.toHost()).toList()], want);
    assert.deepEqual((await o2.toHost()).toList(), (await o.toHost()).toList());
  });

  it("debug callbacks fire as JAX fires them: once under grad, once per element under vmap, once in vjp's forward pass", async () => {
    const seen: unknown[] = [];
    const cb = callbackWithListWrapper((tag: string, v: unknown) => seen.push([tag, v]), { ordered: true });
    const f = (tag: string) => (a: Tracer) => {
      cb(tag, a);
      return jnp.sum(jnp.square(a));
    };
    const x = array([1, 2], "float32");
    await T.grad(f("grad"))(x);
    await T.vmap(f("vmap"))(array([[1, 2], [3, 4], [5, 6]], "float32"));
    await jit((a: Tracer) => {
      const [o, pull] = T.vjp(f("vjp"), a) as unknown as [Tracer, (c: Tracer) => Tracer[]];
      return [o, pull(jnp.onesLike(o))[0]!, pull(jnp.onesLike(o))[0]!];
    })(x as never);
    assert.deepEqual(seen, [
      ["grad", [1, 2]],
      ["vmap", [1, 2]],
      ["vmap", [3, 4]],
      ["vmap", [5, 6]],
      ["vjp", [1, 2]],
    ]);
  });
});

/** Run a jitted Python expression in a fresh process and return its leaves as nested lists. */
async function runPythonJit(expr: string): Promise<unknown> {
  const r = await oracle.execTree(false, `result = jax.jit(lambda: ${expr})()`);
  assert.ok(r.ok, (r as { error?: string }).error);
  return (r as { leaves: NDArray[] }).leaves.map((l) => l.toList());
}
