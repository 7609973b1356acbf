/**
 * cond / scan / while nested to any depth, with bodies that close over
 * tracers of every enclosing level and over a captured NDArray: generated
 * programs compared bit for bit with the same nesting of lax.cond / lax.scan
 * / lax.while_loop written in Python; plus the type checks that raise.
 */
import assert from "node:assert/strict";
import { NDArray } from "../../../src/values/ndarray.js";
import { condFlat, foriLoopFlat, scanFlat, switchFlat, whileFlat } from "../../../src/trace/lib/control.js";
import { TraceError } from "../../../src/trace/errors.js";
import { jnp } from "../../../src/trace/lib/index.js";
import { traceFlat } from "../../../src/trace/trace.js";
import type { Tracer } from "../../../src/trace/tracer.js";
import { Oracle, pick, randomArray, rng } from "../support/oracle.js";

const oracle = new Oracle();
after(() => oracle.close());

interface Gen {
  ts: (h: Tracer, scope: Map<string, Tracer | NDArray>) => Tracer;
  py: (h: string) => string;
  kinds: string[];
}

function gen(r: () => number, depth: number, scope: string[], maxDepth: number): Gen {
  const kind = depth >= maxDepth ? "leaf" : pick(r, ["leaf", "cond", "scan", "while", "seq", "switch"]);
  const v = pick(r, scope);
  const d = depth;
  const hn = `h${d}`;
  switch (kind) {
    case "leaf": {
      const variant = Math.floor(r() * 3);
      if (variant === 0) return { kinds: ["leaf"], ts: (h, s) => jnp.tanh(jnp.matmul(h, s.get("w") as Tracer).add(jnp.multiply(s.get(v)!, 0.5))), py: (h) => `jnp.tanh(${h} @ w + ${v} * 0.5)` };
      if (variant === 1) return { kinds: ["leaf"], ts: (h, s) => h.mul(0.9).add(jnp.sin(s.get(v)!)), py: (h) => `(${h} * 0.9 + jnp.sin(${v}))` };
      return { kinds: ["leaf"], ts: (h, s) => jnp.where(h.gt(0), h.sub(jnp.asarray(s.get(v)!).mul(0.25)), jnp.exp(h).sub(1)), py: (h) => `jnp.where(${h} > 0, ${h} - ${v} * 0.25, jnp.exp(${h}) - 1)` };
    }
    case "seq": {
      const a = gen(r, depth + 1, scope, maxDepth);
      const b = gen(r, depth + 1, scope, maxDepth);
      return { kinds: ["seq", ...a.kinds, ...b.kinds], ts: (h, s) => b.ts(a.ts(h, s), s), py: (h) => b.py(a.py(h)) };
    }
    case "cond": {
      const inner = [...scope, hn];
      const a = gen(r, depth + 1, inner, maxDepth);
      const b = gen(r, depth + 1, inner, maxDepth);
      return {
        kinds: ["cond", ...a.kinds, ...b.kinds],
        ts: (h, s) => condFlat(jnp.sum(h).gt(0), (x) => [a.ts(x, new Map(s).set(hn, x))], (x) => [b.ts(x, new Map(s).set(hn, x))], [h])[0]!,
        py: (h) => `lax.cond(jnp.sum(${h}) > 0, lambda ${hn}: ${a.py(hn)}, lambda ${hn}: ${b.py(hn)}, ${h})`,
      };
    }
    case "switch": {
      const inner = [...scope, hn];
      const bs = [0, 1, 2].map(() => gen(r, depth + 1, inner, maxDepth));
      return {
        kinds: ["switch", ...bs.flatMap((b) => b.kinds)],
        ts: (h, s) =>
          switchFlat(
            jnp.argmax(h),
            bs.map((b) => (x: Tracer) => [b.ts(x, new Map(s).set(hn, x))]),
            [h],
          )[0]!,
        py: (h) => `lax.switch(jnp.argmax(${h}), [${bs.map((b) => `lambda ${hn}: ${b.py(hn)}`).join(", ")}], ${h})`,
      };
    }
    case "scan": {
      const xn = `x${d}`;
      const inner = [...scope, hn, xn];
      const body = gen(r, depth + 1, inner, maxDepth);
      const reverse = r() < 0.3;
      const unroll = pick(r, [0, 1, 2, true] as const);
      const pyUnroll = unroll === true ? "True" : String(unroll);
      return {
        kinds: ["scan", ...body.kinds],
        ts: (h, s) => {
          const { carry, ys } = scanFlat(
            ([c], [x]) => {
              const sc = new Map(s).set(hn, c!).set(xn, x!);
              const n = body.ts(c!.add(x!), sc);
              return [[n], [jnp.sum(c!)]];
            },
            [h],
            [s.get("xs") as Tracer],
            { reverse, unroll },
          );
          return carry[0]!.add(jnp.sum(ys[0]!));
        },
        py: (h) => `(lambda r: r[0] + jnp.sum(r[1]))(lax.scan(lambda ${hn}, ${xn}: (${body.py(`(${hn} + ${xn})`)}, jnp.sum(${hn})), ${h}, xs, reverse=${reverse ? "True" : "False"}, unroll=${pyUnroll}))`,
      };
    }
    default: {
      // while: a counter and the state; the body may close over the counter's level too.
      const inner = [...scope, hn];
      const body = gen(r, depth + 1, inner, maxDepth);
      const trips = 1 + Math.floor(r() * 3);
      return {
        kinds: ["while", ...body.kinds],
        ts: (h, s) =>
          whileFlat(
            (i) => i.lt(trips),
            (i, x) => [i.add(1), body.ts(x!, new Map(s).set(hn, x!))],
            [0, h],
          )[1]!,
        py: (h) => `lax.while_loop(lambda st: st[0] < ${trips}, lambda st: (lambda ${hn}: (st[0] + 1, ${body.py(hn)}))(st[1]), (0, ${h}))[1]`,
      };
    }
  }
}

function hexF32(a: NDArray): string {
  return Buffer.from(a.bytes()).toString("hex");
}

for (const x64 of [false, true]) {
  describe(`generated nested control flow (x64=${x64})`, function () {
    this.timeout(600000);
    it("40 random nestings of cond/switch/scan/while (depth ≤ 4) agree bit for bit with lax", async () => {
      const r = rng(x64 ? 777 : 778);
      const failures: string[] = [];
      const seen = new Set<string>();
      for (let i = 0; i < 40; i++) {
        const g = gen(r, 0, ["w0", "c", "h_in"], 1 + (i % 4));
        for (const k of g.kinds) seen.add(k);
        const h = randomArray(r, "float32", [3], { lo: -1, hi: 1 });
        const w = randomArray(r, "float32", [3, 3], { lo: -1, hi: 1 });
        const xs = randomArray(r, "float32", [4, 3], { lo: -1, hi: 1 });
        const c = randomArray(r, "float32", [3], { lo: -1, hi: 1 });
        const res = await oracle.compare(
          (hh, ww, xx) => {
            const scope = new Map<string, Tracer | NDArray>([
              ["w", ww!],
              ["xs", xx!],
              ["w0", ww!.get(0)],
              ["c", c],
              ["h_in", hh!],
            ]);
            return g.ts(hh!, scope);
          },
          [h, w, xs],
          `lambda h_in, w, xs: (lambda w0, c: ${g.py("h_in")})(w[0], jnp.asarray(np.frombuffer(bytes.fromhex("${hexF32(c)}"), np.float32)))`,
          { x64 },
        );
        if (res.mismatch) failures.push(`case ${i} (${g.kinds.join(" ")}): ${res.mismatch}\n  python: ${g.py("h_in")}`);
      }
      assert.deepEqual(failures, []);
      for (const k of ["cond", "switch", "scan", "while"]) assert.ok(seen.has(k), `the generator never produced ${k}`);
    });
  });
}

describe("control flow: closure conversion and captures", () => {
  it("an outer tracer two levels out becomes an input of every body in between", () => {
    const t = traceFlat(
      (a, b) =>
        scanFlat(
          ([c]) => [[condFlat(c!.sum().gt(0), (z) => [z.add(b!)], (z) => [z], [c!])[0]!], []],
          [a!],
          null,
          { length: 2 },
        ).carry,
      [
        { dtype: "float32", shape: [2] },
        { dtype: "float32", shape: [2] },
      ],
      { x64: false },
    );
    const scan = t.program.eqns.find((e) => e.prim === "scan")!;
    assert.equal(scan.params.num_consts, 1, "b is a const of the scan");
    assert.deepEqual(scan.inputs, [1, 0], "scan gets b (var 1) then the carry (var 0)");
    const body = scan.params.body as { eqns: { prim: string; inputs: unknown[]; params: { branches: { inputs: unknown[] }[] } }[] };
    const cond = body.eqns.find((e) => e.prim === "cond")!;
    assert.equal(cond.params.branches[0]!.inputs.length, 2, "both branches take b and the operand, though only one uses b");
    assert.equal(cond.params.branches[1]!.inputs.length, 2);
  });

  it("a captured NDArray is a program input listed once in captures, not bytes in the program", () => {
    const c = new NDArray(new Float32Array([1, 2, 3]), [3]);
    const t = traceFlat((a) => [a!.add(c), a!.mul(c), condFlat(true, (z) => [z.add(c)], (z) => [z], [a!])[0]!], [{ dtype: "float32", shape: [3] }], { x64: false });
    assert.equal(t.captures.length, 1);
    assert.equal(t.captures[0], c);
    assert.equal(t.program.inputs.length, 2);
    assert.ok(!new TextDecoder().decode(t.bytes).includes("0x40000000"), "the array's values are not in the program");
  });

  it("fori_loop with static bounds runs as a scan", async () => {
    const r = rng(5);
    const a = randomArray(r, "float32", [3]);
    const res = await oracle.compare((x) => foriLoopFlat(0, 5, (i, c) => [c!.mul(1.1).add(i.astype("float32"))], [x!]), [a], "lambda x: lax.fori_loop(0, 5, lambda i, c: c * 1.1 + i.astype(jnp.float32), x)", { x64: false });
    assert.equal(res.mismatch, null);
  });

  it("a weakly typed init is promoted to the body's carry dtype, as in JAX", async () => {
    const r = rng(6);
    const xs = randomArray(r, "float32", [4, 2]);
    const res = await oracle.compare(
      (x) => {
        const { carry, ys } = scanFlat(([c], [xt]) => [[c!.add(xt!.sum())], [c!]], [0], [x!]);
        return [...carry, ...ys];
      },
      [xs],
      "lambda x: lax.scan(lambda c, xt: (c + xt.sum(), c), 0, x)",
      { x64: false },
    );
    assert.equal(res.mismatch, null);
  });
});

describe("control flow: type errors, worded as JAX words them", () => {
  const spec = [{ dtype: "float32" as const, shape: [3] }];
  it("cond branches with different output shapes name the output, both types and the call site", () => {
    assert.throws(
      () => traceFlat((a) => condFlat(true, (z) => [z], (z) => [z.get(jnp.slice(0, 2))], [a!]), spec, { x64: false }),
      (e: unknown) =>
        e instanceof TraceError &&
        /^cond: branches must have equal output types but they differ:\n\nThe output of trueFun at path \[0\] has type float32\[3\] but the corresponding output of falseFun has type float32\[2\], so the shapes do not match\.\n\nRevise trueFun and\/or falseFun so that all output types match\./.test(e.message) &&
        /control\.test\.ts/.test(e.message),
    );
  });
  it("cond branches with different dtypes are refused", () => {
    assert.throws(() => traceFlat((a) => condFlat(true, (z) => [z], (z) => [z.astype("int32")], [a!]), spec, { x64: false }), /The output of trueFun at path \[0\] has type float32\[3\] but the corresponding output of falseFun has type int32\[3\], so the dtypes do not match\./);
  });
  it("cond branches that differ in dtype and shape name both, and every differing output", () => {
    assert.throws(
      () => traceFlat((a) => condFlat(true, (z) => [z, z, z], (z) => [z.get(jnp.slice(0, 2)).astype("int32"), z, z.astype("int32")], [a!]), spec, { x64: false }),
      /\n {2}\* the output of trueFun at path \[0\] has type float32\[3\] but the corresponding output of falseFun has type int32\[2\], so the dtypes do not match, and the shapes do not match;\n {2}\* the output of trueFun at path \[2\] has type float32\[3\] but the corresponding output of falseFun has type int32\[3\], so the dtypes do not match\.\n/,
    );
  });
  it("cond branches returning different numbers of arrays are refused", () => {
    assert.throws(() => traceFlat((a) => condFlat(true, (z) => [z, z], (z) => [z], [a!]), spec, { x64: false }), /branch outputs must have the same pytree structure, but they differ:\n\ntrueFun output is a list of length 2 but falseFun output is a list of length 1, so the lengths do not match\./);
  });
  it("switch compares every branch with branch 0", () => {
    assert.throws(
      () => traceFlat((a) => switchFlat(1, [(z) => [z], (z) => [z], (z) => [z.astype("int32")]], [a!]), spec, { x64: false }),
      /switch: branches must have equal output types but they differ:\n\nThe output of branch 0 at path \[0\] has type float32\[3\] but the corresponding output of branch 2 has type int32\[3\], so the dtypes do not match\./,
    );
  });
  it("a scan carry that changes type names the carry component and both types", () => {
    assert.throws(
      () => traceFlat((a) => scanFlat(([c]) => [[c!.astype("int32")], []], [a!], null, { length: 3 }).carry, spec, { x64: false }),
      /scan: scan body function carry input and carry output must have equal types, but they differ:\n\nThe input carry component carry\[0\] has type float32\[3\] but the corresponding output carry component has type int32\[3\], so the dtypes do not match\.\n\nRevise the function so that all output types match the corresponding input types\./,
    );
  });
  it("a scan carry whose length changes is a structure error", () => {
    assert.throws(
      () => traceFlat((a) => scanFlat(([c]) => [[c!, c!], []], [a!], null, { length: 3 }).carry, spec, { x64: false }),
      /scan body function carry input and carry output must have the same pytree structure, but they differ:\n\nThe input carry is a list of length 1 but the carry output is a list of length 2, so the lengths do not match\./,
    );
  });
  it("xs whose leading axes differ are refused, naming them", () => {
    assert.throws(
      () => traceFlat((a, b) => scanFlat((c, [x, y]) => [c, [x!.add(y!.get(0))]], [], [a!, b!]).ys, [{ dtype: "float32", shape: [3] }, { dtype: "float32", shape: [4, 2] }], { x64: false }),
      /scan: got values with different leading axis sizes: xs\[0\] float32\[3\], xs\[1\] float32\[4,2\]/,
    );
  });
  it("a while cond that is not a bool scalar is refused", () => {
    assert.throws(() => traceFlat((a) => whileFlat((x) => x.sum(), (x) => [x], [a!]), spec, { x64: false }), /while_loop: cond_fun must return a boolean scalar, but got output type float32\[\]/);
  });
  it("a while body that changes the carry's dtype names the component", () => {
    assert.throws(
      () => traceFlat((a) => whileFlat((x) => x.sum().gt(0), (x) => [x.astype("int32")], [a!]), spec, { x64: false }),
      /while_loop body function carry input and carry output must have equal types, but they differ:\n\nThe input carry component init_val\[0\] has type float32\[3\] but the corresponding output carry component has type int32\[3\]/,
    );
  });
  it("a scan without xs or length is refused", () => {
    assert.throws(() => traceFlat((a) => scanFlat((c) => [c, []], [a!], null).carry, spec, { x64: false }), /scan: got no values to scan over and `length` not provided/);
  });
});
