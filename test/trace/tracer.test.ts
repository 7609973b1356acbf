/**
 * The tracer itself: shapes and dtypes readable, errors that name the op,
 * the shapes and the user's line, tracers refusing to be JS values, and the
 * Program's canonical encoding and hash.
 */
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { NDArray } from "../../src/values/ndarray.js";
import { TraceError, TracerConversionError } from "../../src/trace/errors.js";
import { canonicalJson, decodeProgram, encodeProgram, IR_VERSION, type Program, sha256Hex } from "../../src/trace/ir.js";
import { jnp, lax } from "../../src/trace/lib/index.js";
import { traceFlat } from "../../src/trace/trace.js";
import type { Tracer } from "../../src/trace/tracer.js";
import { Oracle } from "./support/oracle.js";

const f32 = (...shape: number[]) => ({ dtype: "float32" as const, shape });

describe("tracer: shapes and dtypes", () => {
  it("tracers expose shape, dtype, ndim and size, and ops infer them", () => {
    traceFlat(
      (a, b) => {
        assert.deepEqual(a!.shape, [2, 3]);
        assert.equal(a!.dtype, "float32");
        assert.equal(a!.ndim, 2);
        assert.equal(a!.size, 6);
        const c = jnp.matmul(a!, b!);
        assert.deepEqual(c.shape, [2, 4]);
        const d = jnp.add(a!, jnp.arange(3));
        assert.deepEqual([d.dtype, d.shape], ["float32", [2, 3]]);
        assert.deepEqual(a!.sum({ axis: 1, keepdims: true }).shape, [2, 1]);
        assert.deepEqual(a!.get(null, "...", 1).shape, [1, 2]);
        return c;
      },
      [f32(2, 3), f32(3, 4)],
      { x64: false },
    );
  });

  it("default dtypes follow the x64 mode and are explicit in the program", () => {
    for (const [x64, f, i] of [
      [false, "float32", "int32"],
      [true, "float64", "int64"],
    ] as const) {
      const t = traceFlat(() => [jnp.zeros([2]), jnp.arange(3), jnp.divide(jnp.arange(3), 2)], [], { x64 });
      assert.deepEqual(
        t.outputs.map((o) => o.dtype),
        [f, i, x64 ? "float64" : "float32"],
      );
      assert.equal(t.program.x64, x64);
    }
  });
});

describe("tracer: errors name the op, the shapes and the call site", () => {
  it("a broadcasting mismatch", () => {
    let err: unknown;
    try {
      traceFlat((a, b) => jnp.add(a!, b!), [f32(2, 3), f32(4)], { x64: false });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof TraceError, String(err));
    assert.equal(err.op, "add");
    assert.match(err.message, /^add: shapes \[2, 3\] and \[4\] cannot be broadcast together/);
    assert.match(err.message, /called at .*tracer\.test\.ts:\d+:\d+/);
    assert.match(err.site ?? "", /tracer\.test\.ts/);
  });

  it("a matmul contraction mismatch", () => {
    assert.throws(() => traceFlat((a, b) => jnp.matmul(a!, b!), [f32(2, 3), f32(4, 5)], { x64: false }), (e: unknown) => e instanceof TraceError && /matmul: contracting axes differ: f32\[2,3\] @ f32\[4,5\] \(3 vs 4\)/.test(e.message) && /tracer\.test\.ts/.test(e.message));
  });

  it("lax's strict rules say which jnp function would broadcast or promote", () => {
    assert.throws(() => traceFlat((a, b) => lax.add(a!, b!), [f32(3), f32(2)], { x64: false }), /add: operands must have the same shape \(or be scalars\), got f32\[3\] and f32\[2\]; jnp.add broadcasts/);
    assert.throws(() => traceFlat((a, b) => lax.mul(a!, b!), [f32(3), { dtype: "int32", shape: [3] }], { x64: false }), /mul: operands must have the same dtype, got f32\[3\] and i32\[3\]/);
  });

  it("dtype errors name the dtype and what is accepted", () => {
    assert.throws(() => traceFlat((a) => lax.exp(a!), [{ dtype: "int32", shape: [2] }], { x64: false }), /exp: does not accept dtype int32; accepted dtypes are floating, complex/);
  });

  it("bad axes, reshapes and indices", () => {
    assert.throws(() => traceFlat((a) => a!.sum({ axis: 2 }), [f32(2, 3)], { x64: false }), /sum: axis 2 is out of bounds for an array of rank 2/);
    assert.throws(() => traceFlat((a) => a!.reshape([4, 2]), [f32(2, 3)], { x64: false }), /reshape: cannot reshape an array of size 6 into shape \[4, 2\]/);
    assert.throws(() => traceFlat((a) => a!.get(5), [f32(2, 3)], { x64: false }), /index 5 is out of bounds for axis 0 with size 2/);
    assert.throws(() => traceFlat((a) => a!.get(0, 0, 0), [f32(2, 3)], { x64: false }), /too many indices/);
  });

  it("an escaped tracer is refused with an explanation", () => {
    let leaked: Tracer | undefined;
    traceFlat(
      (a) => {
        leaked = a!;
        return a!;
      },
      [f32(2)],
      { x64: false },
    );
    assert.throws(() => traceFlat((b) => jnp.add(b!, leaked!), [f32(2)], { x64: false }), /was used after that trace finished or outside it: tracers must not escape/);
  });

  it("jnp outside a traced function without a session says it runs eagerly on one, and where else it works", () => {
    assert.throws(() => jnp.zeros([2]), /jnp\.zeros was called outside a traced function, where operations run at once on a sidecar, and there is no open session: call `await connect\(\)` first \(or call it inside jit/);
  });
});

describe("tracer: not a JS value", () => {
  const cases: [string, (t: Tracer) => unknown][] = [
    ["if (x > 0)", (t) => (t as unknown as number) > 0],
    ["Number(x)", (t) => Number(t)],
    ["template string", (t) => `${t}`],
    ["unary plus", (t) => +(t as unknown as number)],
    ["String(x)", (t) => String(t)],
    ["x + 1 with JS +", (t) => (t as unknown as number) + 1],
    ["JSON.stringify", (t) => JSON.stringify(t)],
    ["spread", (t) => [...(t as unknown as Iterable<unknown>)]],
    ["object key", (t) => ({})[t as unknown as string]],
  ];
  for (const [name, use] of cases) {
    it(`${name} throws a TracerConversionError that mentions filterCond`, () => {
      traceFlat(
        (a) => {
          assert.throws(
            () => use(a!),
            (e: unknown) => e instanceof TracerConversionError && /filterCond/.test(e.message) && /f32\[3\]/.test(e.message),
          );
          return a!;
        },
        [f32(3)],
        { x64: false },
      );
    });
  }
  it("console.log / inspect show the abstract value instead of throwing", () => {
    traceFlat(
      (a) => {
        assert.equal(inspect(a), "Tracer<f32[3]> in traced function");
        return a!;
      },
      [f32(3)],
      { x64: false },
    );
  });
});

describe("Program: canonical encoding and hash", () => {
  const fn = (a: Tracer, b: Tracer) => [jnp.tanh(jnp.matmul(a, b)).add(0.1), a.sum()];
  const specs = [f32(2, 3), f32(3, 4)];

  it("tracing twice gives the same bytes and hash", () => {
    const t1 = traceFlat((a, b) => fn(a!, b!), specs, { x64: false });
    const t2 = traceFlat((a, b) => fn(a!, b!), specs, { x64: false });
    assert.deepEqual(t1.bytes, t2.bytes);
    assert.equal(t1.hash, t2.hash);
    assert.equal(t1.hash, sha256Hex(t1.bytes));
    assert.match(t1.hash, /^[0-9a-f]{64}$/);
  });

  it("the encoding is sorted-key JSON without whitespace or floats, and decodes to the same program", () => {
    const t = traceFlat((a, b) => fn(a!, b!), specs, { x64: false });
    const text = new TextDecoder().decode(t.bytes);
    assert.ok(!/\s/.test(text));
    assert.ok(text.startsWith('{"eqns":['));
    const p = decodeProgram(t.bytes);
    assert.equal(p.version, IR_VERSION);
    assert.deepEqual(encodeProgram(p), t.bytes);
    assert.equal(canonicalJson({ b: 1, a: [true, null, "x"] }), '{"a":[true,null,"x"],"b":1}');
    assert.throws(() => canonicalJson({ a: 0.5 }), /not a safe integer/);
    assert.throws(() => canonicalJson({ a: "é" }), /printable ASCII/);
  });

  it("literals carry the exact bits of their dtype", () => {
    const t = traceFlat((a) => [a!.add(0.1), a!.astype("float64").add(0.1), a!.astype("bfloat16").add(0.1), a!.astype("float16").mul(-0)], [f32(2)], { x64: true });
    const lits = t.program.eqns.flatMap((e) => e.inputs.filter((i) => typeof i === "object"));
    assert.deepEqual(lits, [
      { lit: "0x3dcccccd", dtype: "float32" },
      { lit: "0x3fb999999999999a", dtype: "float64" },
      { lit: "0x3dcd", dtype: "bfloat16" },
      { lit: "0x8000", dtype: "float16" },
    ]);
  });

  it("dead code is dropped, so unused work does not change the hash", () => {
    const t1 = traceFlat((a) => a!.mul(2), [f32(2)], { x64: false });
    const t2 = traceFlat(
      (a) => {
        jnp.exp(a!).sum();
        return a!.mul(2);
      },
      [f32(2)],
      { x64: false },
    );
    assert.equal(t1.hash, t2.hash);
    assert.equal(t2.program.eqns.length, 1);
  });

  it("the program changes with the x64 mode and with input types", () => {
    const a = traceFlat((x) => x!.add(1), [f32(2)], { x64: false }).hash;
    const b = traceFlat((x) => x!.add(1), [f32(2)], { x64: true }).hash;
    const c = traceFlat((x) => x!.add(1), [f32(3)], { x64: false }).hash;
    assert.equal(new Set([a, b, c]).size, 3);
  });
});

describe("literal encoding agrees with numpy", () => {
  const oracle = new Oracle();
  after(() => oracle.close());
  it("float literals round like np.asarray(v).astype(dtype) for 200 values × 4 dtypes", async () => {
    const values = [0.1, -0.1, 1 / 3, 65519, 65520, 1e-8, 5.96e-8, 2.98e-8, 3.4e38, 3.5e38, 1e-45, 7e-46, 1.0000001, 0.5, -0, NaN, Infinity, -Infinity];
    let s = 7;
    for (let i = 0; i < 182; i++) {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      values.push((s / 2 ** 31 - 0.5) * 10 ** ((s % 20) - 10));
    }
    const dtypes = ["float16", "bfloat16", "float32", "float64"] as const;
    const ours: Record<string, string[]> = {};
    for (const d of dtypes) {
      ours[d] = values.map((v) => {
        const t = traceFlat((x) => x!.add(v), [{ dtype: d, shape: [] }], { x64: true });
        return (t.program.eqns[0]!.inputs[1] as { lit: string }).lit;
      });
    }
    const theirs = await oracle.exec<Record<string, string[]>>(
      true,
      `
vals = ${JSON.stringify(values.map((v) => (Number.isNaN(v) ? "nan" : v === Infinity ? "inf" : v === -Infinity ? "-inf" : Object.is(v, -0) ? "-0.0" : String(v))))}
out = {}
for d, u, w in [("float16", np.uint16, 4), ("bfloat16", np.uint16, 4), ("float32", np.uint32, 8), ("float64", np.uint64, 16)]:
    dt = jnp.dtype(d)
    out[d] = ["0x" + format(int(np.asarray(float(v)).astype(dt).view(u)), "0%dx" % w) for v in vals]
result = out
`,
    );
    for (const d of dtypes) {
      const bad = values.map((v, i) => [v, ours[d]![i], theirs[d]![i]] as const).filter(([, a, b]) => a !== b && !(a!.match(/^0x7(c|f)/) && b!.match(/^0x7(c|f)/) && false));
      const nanOk = bad.filter(([v]) => !Number.isNaN(v));
      assert.deepEqual(nanOk, [], `${d}: ${JSON.stringify(nanOk.slice(0, 5))}`);
    }
  });
});

describe("programs run from captured NDArrays", () => {
  const oracle = new Oracle();
  after(() => oracle.close());
  it("a captured NDArray is passed as an argument after the declared inputs", async () => {
    const c = new NDArray(new Float32Array([1, 2, 3]), [3]);
    const res = await oracle.compare((a) => a!.mul(c).add(c), [new NDArray(new Float32Array([4, 5, 6]), [3])], "lambda a: a * jnp.array([1., 2., 3.], jnp.float32) + jnp.array([1., 2., 3.], jnp.float32)", { x64: false });
    assert.equal(res.mismatch, null);
    assert.equal(res.traced.captures.length, 1);
  });
});

export type { Program };
