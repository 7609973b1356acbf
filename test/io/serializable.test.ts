import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeviceArray, type HandleOwner } from "../../src/values/device-array.js";
import type { DType } from "../../src/values/dtype.js";
import { Module } from "../../src/values/module.js";
import { NDArray, array, zerosHost } from "../../src/values/ndarray.js";
import { encodeNpy } from "../../src/io/npy.js";
import { Serializable, canonicalStructure, deserialiseLeaves, serialiseLeaves, structureFingerprint } from "../../src/io/serializable.js";
import { FINGERPRINT_BYTES, FingerprintMismatchError, SerializationError, eqxPath } from "../../src/io/eqx-file.js";
import { firstDifference, treeEqual } from "../../src/values/tree.js";
import { runPython } from "../support/python.js";
import { mulberry32 } from "../support/random.js";
import { useSession } from "../support/session.js";

// ---------------------------------------------------------------------------
// Modules, and their equinox equivalents

class Dense extends Serializable {
  w: NDArray;
  b: NDArray;
  act: string;
  static staticFields = ["act"];
  constructor(inSize: number, outSize: number, act: string, dtype: DType = "float32") {
    super();
    this.w = zerosHost([inSize, outSize], dtype);
    this.b = zerosHost([outSize], dtype);
    this.act = act;
  }
}

class Net extends Serializable {
  layers: Dense[];
  extras: Record<string, unknown>;
  name: string;
  note: string;
  nothing: null;
  sizes: number[];
  lr: number;
  static staticFields = ["name", "sizes"];
  constructor(sizes: number[], name: string, opts: { act?: string; halfDtype?: DType } = {}) {
    super();
    this.layers = sizes.slice(1).map((n, i) => new Dense(sizes[i]!, n, opts.act ?? "tanh"));
    this.extras = {
      half: zerosHost([2, 3], opts.halfDtype ?? "bfloat16"),
      step: zerosHost([], "int64"),
      empty: zerosHost([0, 3], "float32"),
      counts: zerosHost([3], "int64"),
      z: zerosHost([2], "complex64"),
      f16: zerosHost([1, 2], "float16"),
      mask: zerosHost([4], "bool"),
      scale: 0,
      flag: false,
      big: 0n,
      list: [zerosHost([2], "float64"), zerosHost([], "uint8"), { deep: zerosHost([1], "int8") }],
    };
    this.name = name;
    this.note = "a string leaf: equinox skips it";
    this.nothing = null;
    this.sizes = sizes;
    this.lr = 0;
  }
}

const PY_MODULES = `
import json, sys, base64, io
from typing import Any
import numpy as np, ml_dtypes
import jax
jax.config.update("jax_enable_x64", True)  # int64 leaves stay int64, as the sidecar runs JAX
import jax.numpy as jnp
import equinox as eqx

class Dense(eqx.Module):
    w: Any
    b: Any
    act: str = eqx.field(static=True)

class Net(eqx.Module):
    layers: list
    extras: dict
    name: str = eqx.field(static=True)
    note: Any
    nothing: Any
    sizes: tuple = eqx.field(static=True)
    lr: Any

class Small(eqx.Module):
    count: Any
    ratio: Any

CLASSES = {"Dense": Dense, "Net": Net, "Small": Small}

def npdtype(name):
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)

def hook(d):
    if "__module__" in d:
        return CLASSES[d["__module__"]](**d["fields"])
    if "__nd__" in d:
        s = d["__nd__"]
        return jnp.asarray(np.frombuffer(base64.b64decode(s["b64"]), dtype=npdtype(s["dtype"])).reshape(s["shape"]))
    if "__float__" in d:
        return float(d["__float__"])
    if "__int__" in d:
        return int(d["__int__"])
    if "__tuple__" in d:
        return tuple(d["__tuple__"])
    return d

def like_of(tree):
    # What a fresh constructor gives: zeros of the same dtypes and shapes, scalars of the same types.
    def z(x):
        if eqx.is_array(x):
            return jnp.zeros_like(x)
        if isinstance(x, (bool, int, float, complex)):
            return type(x)(0)
        return x
    return jax.tree.map(z, tree)

def serialise(tree):
    f = io.BytesIO(); eqx.tree_serialise_leaves(f, tree); return base64.b64encode(f.getvalue()).decode()
`;

/** JSON for the oracle: Modules with their fields, arrays as base64, numbers as Python floats, bigints as ints. */
function encode(t: unknown, isStatic = false): unknown {
  if (isStatic) return Array.isArray(t) ? { __tuple__: t } : t;
  if (t instanceof Module) {
    const fields: Record<string, unknown> = {};
    for (const f of Module.fieldsOf(t)) fields[f.name] = encode((t as unknown as Record<string, unknown>)[f.name], f.static);
    return { __module__: t.className, fields };
  }
  if (t instanceof NDArray) return { __nd__: { dtype: t.dtype, shape: t.shape, b64: Buffer.from(t.bytes()).toString("base64") } };
  if (typeof t === "number") return { __float__: t };
  if (typeof t === "bigint") return { __int__: String(t) };
  if (Array.isArray(t)) return t.map((x) => encode(x));
  if (t !== null && typeof t === "object") return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, encode(v)]));
  return t;
}

/** Random finite values of a dtype (no NaN, so equality is plain). */
function randomLike(a: NDArray, rnd: () => number): NDArray {
  const vals = Array.from({ length: a.size }, () => {
    switch (a.dtype) {
      case "bool":
        return rnd() < 0.5;
      case "complex64":
      case "complex128":
        return { re: Math.round((rnd() - 0.5) * 64) / 8, im: Math.round((rnd() - 0.5) * 64) / 8 };
      case "int64":
        return BigInt(Math.floor((rnd() - 0.5) * 2 ** 52)) * 1024n + 7n;
      case "uint8":
        return Math.floor(rnd() * 256);
      case "int8":
        return Math.floor(rnd() * 256) - 128;
      default:
        return Math.round((rnd() - 0.5) * 512) / 16;
    }
  });
  return array(vals as never, a.dtype, a.shape);
}

/** The model with every array and scalar leaf given a random value. */
function randomized<T>(m: T, seed: number): T {
  const rnd = mulberry32(seed);
  const walk = (x: unknown, isStatic: boolean): unknown => {
    if (isStatic) return x;
    if (x instanceof NDArray) return randomLike(x, rnd);
    if (typeof x === "number") return Math.round((rnd() - 0.5) * 1e6) / 64;
    if (typeof x === "boolean") return true;
    if (typeof x === "bigint") return -(2n ** 62n) + 12345n;
    if (x instanceof Module) {
      const r = x as unknown as Record<string, unknown>;
      return Module.build(
        Object.getPrototypeOf(x) as object,
        Module.fieldsOf(x).map((f) => f.name),
        Module.fieldsOf(x).map((f) => walk(r[f.name], f.static)),
      );
    }
    if (Array.isArray(x)) return x.map((v) => walk(v, false));
    if (x !== null && typeof x === "object") return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, walk(v, false)]));
    return x;
  };
  return walk(m, false) as T;
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "base64"));

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "jaxbridge-serializable-"));
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function expectRejects(p: Promise<unknown>, cls: new (...a: never[]) => Error, re: RegExp, check?: (e: never) => void): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.match((e as Error).message, re);
    check?.(e as never);
    return true;
  });
}

// ---------------------------------------------------------------------------

describe("serializable: files equinox reads and writes", () => {
  it("a TS module's file, minus its 32 bytes, is byte for byte eqx.tree_serialise_leaves of the equivalent eqx.Module, and loads there", async () => {
    const model = randomized(new Net([3, 4, 2], "mlp"), 1);
    const file = await model.serialize(join(dir, "net.pt"));
    assert.equal(file, join(dir, "net.eqx"));
    const bytes = await readFile(file);
    assert.deepEqual(new Uint8Array(bytes.subarray(0, 32)), structureFingerprint(model));
    const code = `${PY_MODULES}
inp = json.load(sys.stdin, object_hook=hook)
model = inp["model"]
with open(inp["file"], "rb") as f:  # as docs/serialization.md says: skip the fingerprint, hand the rest to equinox
    f.seek(32)
    loaded = eqx.tree_deserialise_leaves(f, like_of(model))
leaves = jax.tree.leaves(model)
print(json.dumps({
    "eqx": serialise(model),
    "equal": bool(eqx.tree_equal(loaded, model)),
    "kinds": [type(x).__name__ + (":" + str(x.dtype) + str(list(x.shape)) if eqx.is_array(x) else "") for x in leaves],
}))
`;
    const py = await runPython<{ eqx: string; equal: boolean; kinds: string[] }>(code, { model: encode(model), file });
    const eqxBytes = unb64(py.eqx);
    assert.equal(Buffer.compare(Buffer.from(eqxBytes), bytes.subarray(32)), 0, "the leaf stream equals equinox's");
    assert.ok(py.equal, "eqx.tree_deserialise_leaves loads it into the equivalent module with equal leaves");
    // The equivalent module really has the leaves this test is about.
    for (const k of ["ArrayImpl:bfloat16[2, 3]", "ArrayImpl:int64[]", "ArrayImpl:float32[0, 3]", "ArrayImpl:complex64[2]", "float", "bool", "int", "str"]) {
      assert.ok(py.kinds.includes(k), `${k} in ${py.kinds.join(" ")}`);
    }
    assert.equal(Buffer.compare(Buffer.from(await serialiseLeaves(model)), bytes.subarray(32)), 0, "serialiseLeaves gives the same stream");
  });

  it("an equinox-written leaf stream, behind our fingerprint, loads into the TS module with equal leaves", async () => {
    const model = randomized(new Net([2, 5, 3], "policy", { act: "relu" }), 2);
    const py = await runPython<string>(`${PY_MODULES}
print(json.dumps(serialise(json.load(sys.stdin, object_hook=hook))))
`, encode(model));
    const path = join(dir, "from-python.eqx");
    await writeFile(path, Buffer.concat([structureFingerprint(model), unb64(py)]));
    const loaded = await Net.deserialize(path, [2, 5, 3], "policy", { act: "relu" });
    assert.ok(loaded instanceof Net && loaded.layers[0] instanceof Dense);
    assert.equal(firstDifference(loaded, model), null);
    assert.ok(treeEqual(loaded, model));
    assert.equal(typeof loaded.extras.big, "bigint");
    assert.equal(loaded.note, "a string leaf: equinox skips it");
  });

  it("reads Python int and float scalars into number leaves, as eqx.tree_deserialise_leaves converts them", async () => {
    class Small extends Serializable {
      count = 0;
      ratio = 0;
    }
    const py = await runPython<string>(`${PY_MODULES}
print(json.dumps(serialise(Small(count=7, ratio=0.25))))
`);
    const leaves = unb64(py);
    const path = join(dir, "small.eqx");
    await writeFile(path, Buffer.concat([structureFingerprint(new Small()), leaves]));
    const s = await Small.deserialize(path);
    assert.deepEqual([s.count, s.ratio], [7, 0.25]);
    // Written back, the int becomes a Python float (<f8): a JS number is a double.
    const back = await serialiseLeaves(s);
    const again = await runPython<[unknown, unknown]>(`${PY_MODULES}
t = eqx.tree_deserialise_leaves(io.BytesIO(base64.b64decode(json.load(sys.stdin))), Small(count=0, ratio=0.0))
print(json.dumps([repr(t.count), repr(t.ratio)]))
`, b64(back));
    assert.deepEqual(again, ["7", "0.25"]);
  });

  it("round-trips in TypeScript; without a session arrays come back as host NDArrays", async () => {
    const model = randomized(new Net([1, 2], "tiny"), 3);
    const path = await model.serialize(join(dir, "deep", "er", "tiny"));
    assert.equal(path, join(dir, "deep", "er", "tiny.eqx"));
    const back = await Net.deserialize(path, [1, 2], "tiny");
    assert.ok(treeEqual(back, model));
    assert.ok(back.layers[0]!.w instanceof NDArray);
    // the same rule applies on reading: the path without a suffix finds the file
    assert.ok(treeEqual(await Net.deserialize(join(dir, "deep", "er", "tiny"), [1, 2], "tiny"), model));
    assert.ok(treeEqual(await Net.deserialize({ path: join(dir, "deep", "er", "tiny.pt") }, [1, 2], "tiny"), model));
  });

  it("noSuffix writes and reads the path as given", async () => {
    const m = randomized(new Dense(2, 2, "relu"), 4);
    const p = await m.serialize(join(dir, "plain.bin"), { noSuffix: true });
    assert.equal(p, join(dir, "plain.bin"));
    assert.ok(treeEqual(await Dense.deserialize({ path: p, noSuffix: true }, 2, 2, "relu"), m));
    await expectRejects(Dense.deserialize(p, 2, 2, "relu"), SerializationError, /cannot read .*plain\.eqx \(the path ".*plain\.bin" with the \.eqx suffix rule; pass noSuffix to read it as given\)/);
  });
});

describe("serializable: the suffix rule", () => {
  it("replaces any suffix other than .eqx exactly as lerax's Path.with_suffix does", async () => {
    const paths = ["a.b.c", "a", ".hidden", "a.", "a..", "dir/", "dir/x.eqx", "x.EQX", "a.tar.gz", "..", "d.x/f", "a. b", "...", ".a.b", "a/.b", "x.eqx/", "./a", "a//b.c", "/abs/m.pt"];
    const py = await runPython<(string | null)[]>(`
import json, sys
from pathlib import Path
out = []
for p in json.load(sys.stdin):
    q = Path(p)
    try:
        out.append(str(q if q.suffix == ".eqx" else q.with_suffix(".eqx")))
    except ValueError:
        out.append(None)
print(json.dumps(out))
`, paths);
    paths.forEach((p, i) => assert.equal(eqxPath(p), py[i], p));
    for (const p of ["", ".", "/"]) assert.throws(() => eqxPath(p), (e: unknown) => e instanceof SerializationError && /has an empty name/.test((e as Error).message));
  });
});

describe("serializable: the fingerprint", () => {
  class Tiny extends Serializable {
    w: unknown;
    act: unknown;
    static staticFields = ["act"];
    constructor(w: unknown, act: unknown) {
      super();
      this.w = w;
      this.act = act;
    }
  }

  it("is sha256 of the documented canonical form", async () => {
    const t = new Tiny([array([1, 2], "float32"), null, { b: 1, a: undefined }], "relu");
    const canon = canonicalStructure(t);
    assert.equal(canon, '["jaxbridge.ts-structure",1,["module","Tiny",["w","child",["list","*",["None"],["dict",["a",["undefined"]],["b","*"]]]],["act","static","relu"]]]');
    assert.equal(structureFingerprint(t).length, FINGERPRINT_BYTES);
    const relu = (x: number) => Math.max(x, 0);
    const statics = new Tiny(1, [1.5, -0, NaN, -Infinity, 2n ** 70n, true, null, undefined, "é\u{1F600}", relu, NDArray, { z: 1, a: [2] }, array([1, 2], "uint8"), new Tiny(0, "x")]);
    // As docs/serialization.md says: Python's json.dumps rewrites the same text, and hashlib gives the same sha256.
    const py = await runPython<{ same: boolean; sha: string }[]>(`
import json, sys, hashlib
out = []
for c in json.load(sys.stdin):
    again = json.dumps(json.loads(c), ensure_ascii=False, separators=(",", ":"))
    out.append({"same": again == c, "sha": hashlib.sha256(again.encode("utf-8")).hexdigest()})
print(json.dumps(out))
`, [canon, canonicalStructure(statics)]);
    assert.deepEqual(py.map((r) => r.same), [true, true]);
    assert.equal(Buffer.from(structureFingerprint(t)).toString("hex"), py[0]!.sha);
    assert.equal(Buffer.from(structureFingerprint(statics)).toString("hex"), py[1]!.sha);
    assert.equal(
      canonicalStructure(statics),
      '["jaxbridge.ts-structure",1,["module","Tiny",["w","child","*"],["act","static",["array",["number","1.5"],["number","-0"],["number","NaN"],["number","-Infinity"],["bigint","1180591620717411303424"],true,null,["undefined"],"é😀",["function","relu"],["function","NDArray"],["object",["a",["array",["number","2"]]],["z",["number","1"]]],["ndarray","uint8",[2],"0102"],["module","Tiny",["w",["number","0"]],["act","x"]]]]]]',
    );
  });

  it("covers structure only: leaf values, shapes and dtypes do not change it; everything structural does", () => {
    const fp = (t: unknown): string => Buffer.from(structureFingerprint(t)).toString("hex");
    assert.equal(fp(new Dense(2, 3, "relu")), fp(new Dense(5, 1, "relu", "bfloat16")));
    assert.equal(fp(new Tiny(1, "a")), fp(new Tiny(array([1]), "a")));
    class Tiny2 extends Tiny {}
    const variants: unknown[] = [
      new Tiny(1, "a"),
      new Tiny(1, "b"),
      new Tiny(1, 1),
      new Tiny(1, "1"),
      new Tiny(1, 1n),
      new Tiny(1, [1]),
      new Tiny(1, { 0: 1 }),
      new Tiny(1, -0),
      new Tiny(1, null),
      new Tiny(1, undefined),
      new Tiny([1], "a"),
      new Tiny([1, 1], "a"),
      new Tiny(null, "a"),
      new Tiny(undefined, "a"),
      new Tiny({ x: 1 }, "a"),
      new Tiny({ y: 1 }, "a"),
      new Tiny2(1, "a"),
      new Dense(1, 1, "a"),
      [new Tiny(1, "a")],
      { w: 1, act: "a" },
    ];
    const seen = new Map<string, number>();
    variants.forEach((v, i) => {
      const h = fp(v);
      assert.equal(seen.get(h), undefined, `variant ${i} collides with variant ${seen.get(h)}`);
      seen.set(h, i);
    });
  });

  it("refuses static values with no stable canonical form, naming the field", async () => {
    const cases: [unknown, RegExp][] = [
      [[(x: number) => x], /static value at \.act\[0\]: an anonymous function has no stable identity/],
      [Symbol("s"), /at \.act: a symbol \(Symbol\(s\)\)/],
      [new Map(), /at \.act: an instance of Map has no canonical form/],
      [{ when: new Date(0) }, /at \.act\['when'\]: an instance of Date/],
    ];
    for (const [v, re] of cases) {
      assert.throws(() => structureFingerprint(new Tiny(1, v)), (e: unknown) => e instanceof SerializationError && re.test((e as Error).message));
      await expectRejects(new Tiny(1, v).serialize(join(dir, "never")), SerializationError, re);
    }
    assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith("never") || n.startsWith(".never")), []);
  });

  it("is pluggable: a class may override static fingerprint(), also async", async () => {
    const fixed = new Uint8Array(32).fill(7);
    class Custom extends Serializable {
      w = array([1, 2, 3], "int32");
      static override async fingerprint(): Promise<Uint8Array> {
        return fixed;
      }
    }
    const p = await new Custom().serialize(join(dir, "custom"));
    const bytes = await readFile(p);
    assert.deepEqual(new Uint8Array(bytes.subarray(0, 32)), fixed);
    assert.ok(treeEqual(await Custom.deserialize(p), new Custom()));
    class Bad extends Serializable {
      static override fingerprint(): Uint8Array {
        return new Uint8Array(16);
      }
    }
    await expectRejects(new Bad().serialize(join(dir, "bad")), SerializationError, /Bad\.fingerprint\(\) must return 32 bytes \(a Uint8Array\), got 16 bytes/);
  });
});

describe("serializable: errors", () => {
  let netFile = "";
  let netBytes: Buffer;
  const model = randomized(new Dense(2, 3, "relu"), 5);
  let denseFile = "";
  let denseBytes: Buffer;
  before(async () => {
    netFile = await randomized(new Net([2, 3], "n"), 6).serialize(join(dir, "errors", "net"));
    netBytes = await readFile(netFile);
    denseFile = await model.serialize(join(dir, "errors", "dense"));
    denseBytes = await readFile(denseFile);
  });

  async function withBytes(name: string, b: Uint8Array): Promise<string> {
    const p = join(dir, "errors", `${name}.eqx`);
    await writeFile(p, b);
    return p;
  }

  it("a fingerprint mismatch says the constructor arguments build a different structure", async () => {
    await expectRejects(
      Net.deserialize(netFile, [2, 3], "n", { act: "relu" }),
      FingerprintMismatchError,
      /the constructor arguments of Net build a different structure than the file's: its structural fingerprint is [0-9a-f]{64}, the file's is [0-9a-f]{64}/,
      (e: FingerprintMismatchError) => {
        assert.equal(e.file, netFile);
        assert.equal(e.found.length, 32);
      },
    );
    await expectRejects(Net.deserialize(netFile, [2, 3, 1], "n"), FingerprintMismatchError, /different structure/);
    await expectRejects(Dense.deserialize(netFile, 2, 3, "relu"), FingerprintMismatchError, /constructor arguments of Dense/);
  });

  it("a shape or dtype mismatch names the leaf's key path", async () => {
    await expectRejects(
      Dense.deserialize(denseFile, 2, 4, "relu"),
      SerializationError,
      /leaf \.w \(record 1 of 2\) at byte offset 32 is float32\[2, 3\] in the file, but the skeleton has float32\[2, 4\] \(shape differs\)/,
      (e: SerializationError) => {
        assert.equal(e.path, ".w");
        assert.equal(e.offset, 32);
      },
    );
    await expectRejects(Dense.deserialize(denseFile, 2, 3, "relu", "float64"), SerializationError, /leaf \.w .* is float32\[2, 3\] in the file, but the skeleton has float64\[2, 3\] \(dtype differs\)/);
    await expectRejects(
      Net.deserialize(netFile, [2, 3], "n", { halfDtype: "float16" }),
      SerializationError,
      /leaf \.extras\['half'\] \(record 8 of 16\) at byte offset \d+ is bfloat16\[2, 3\] in the file, but the skeleton has float16\[2, 3\]/,
    );
  });

  it("a truncated file is an error, wherever it is cut", async () => {
    await expectRejects(Dense.deserialize(await withBytes("cut10", denseBytes.subarray(0, 10)), 2, 3, "relu"), SerializationError, /truncated: 10 bytes, shorter than the 32-byte structural fingerprint/);
    await expectRejects(
      Dense.deserialize(await withBytes("cut32", denseBytes.subarray(0, 32)), 2, 3, "relu"),
      SerializationError,
      /truncated: the data ends at byte offset 32, before leaf \.w \(record 1 of 2\)/,
    );
    await expectRejects(Dense.deserialize(await withBytes("cut50", denseBytes.subarray(0, 50)), 2, 3, "relu"), SerializationError, /bad NPY record for leaf \.w .*cut short: the header is 118 bytes, 8 left \(at byte offset 42\)/);
    const cutData = denseBytes.length - 5;
    await expectRejects(
      Dense.deserialize(await withBytes("cutdata", denseBytes.subarray(0, cutData)), 2, 3, "relu"),
      SerializationError,
      /bad NPY record for leaf \.b \(record 2 of 2\): NPY record cut short: float32\(3,\) needs 12 data bytes, 7 left/,
      (e: SerializationError) => assert.equal(e.path, ".b"),
    );
    const firstEnd = 32 + 128 + 24;
    await expectRejects(Dense.deserialize(await withBytes("cutrecord", denseBytes.subarray(0, firstEnd)), 2, 3, "relu"), SerializationError, new RegExp(`data ends at byte offset ${firstEnd}, before leaf \\.b`));
  });

  it("trailing bytes are an error", async () => {
    await expectRejects(
      Dense.deserialize(await withBytes("extra", Buffer.concat([denseBytes, encodeNpy(array([1], "float32"))])), 2, 3, "relu"),
      SerializationError,
      new RegExp(`132 trailing bytes after the last leaf, at byte offset ${denseBytes.length}: another NPY record \\(float32\\[1\\]\\) starts there`),
    );
    await expectRejects(Dense.deserialize(await withBytes("junk", Buffer.concat([denseBytes, Buffer.from("x")])), 2, 3, "relu"), SerializationError, /1 trailing bytes after the last leaf/);
  });

  it("a bad NPY header is an error naming the leaf and the offset", async () => {
    const bad = Buffer.from(denseBytes);
    const second = 32 + 128 + 24;
    bad[second + 3] = 0x00; // break the magic string of .b's record
    await expectRejects(Dense.deserialize(await withBytes("badmagic", bad), 2, 3, "relu"), SerializationError, new RegExp(`bad NPY record for leaf \\.b \\(record 2 of 2\\): not an NPY record.*at byte offset ${second}\\)`), (e: SerializationError) =>
      assert.equal(e.offset, second),
    );
    const badVersion = Buffer.from(denseBytes);
    badVersion[32 + 6] = 9;
    await expectRejects(Dense.deserialize(await withBytes("badversion", badVersion), 2, 3, "relu"), SerializationError, /leaf \.w .*unsupported NPY format version 9\.0/);
    const badDict = Buffer.from(denseBytes);
    badDict.write("'sh4pe'", 32 + 10 + badDict.subarray(42).indexOf("'shape'"), "latin1");
    await expectRejects(Dense.deserialize(await withBytes("baddict", badDict), 2, 3, "relu"), SerializationError, /leaf \.w .*malformed NPY header: .*'sh4pe'/);
  });

  it("a scalar leaf must be a 0-d record of a fitting kind", () => {
    class S extends Serializable {
      x: unknown = 0;
    }
    const rec = (a: NDArray): Uint8Array => encodeNpy(a);
    assert.equal((deserialiseLeaves(rec(array(3n, "int64")), new S()) as S).x, 3);
    assert.equal((deserialiseLeaves(rec(array(true, "bool")), new S()) as S).x, 1);
    assert.throws(() => deserialiseLeaves(rec(array([1.5], "float64")), new S()), /leaf \.x .* is float64\[1\] in the file, but the skeleton has a number there \(a 0-d record\)/);
    assert.throws(() => deserialiseLeaves(rec(array({ re: 1, im: 0 }, "complex128")), new S()), /a complex value does not fit in a number/);
    assert.throws(() => deserialiseLeaves(rec(array(2n ** 60n + 1n, "int64")), new S()), /not exactly representable as a double; use a bigint field/);
    const b = new S().replace({ x: false });
    assert.throws(() => deserialiseLeaves(rec(array(1, "int32")), b), /skeleton has a boolean there: a boolean is saved as a bool/);
    const big = new S().replace({ x: 0n });
    assert.equal((deserialiseLeaves(rec(array(2n ** 64n - 1n, "uint64")), big) as S).x, 2n ** 64n - 1n);
  });

  it("a failed write leaves the old file intact and no temp file behind", async () => {
    const sub = join(dir, "atomic");
    const good = randomized(new Dense(2, 3, "relu"), 7);
    const p = await good.serialize(join(sub, "m"));
    const before = await readFile(p);
    let fetched = 0;
    let during: (readonly [string, number])[] = [];
    const owner: HandleOwner = {
      instance: "test-owner",
      closed: false,
      release: () => undefined,
      fetch: async () => {
        fetched++;
        // What the folder holds at the moment of the failure.
        during = await Promise.all((await readdir(sub)).map(async (n) => [n, (await stat(join(sub, n))).size] as const));
        throw new Error("the device went away mid-write");
      },
    };
    const broken = good.replace({ b: new DeviceArray(owner, 1, "float32", [3], "cpu:0") as unknown as NDArray });
    // .b's fetch throws after .w's record was produced.
    await assert.rejects(broken.serialize(join(sub, "m")), /the device went away mid-write/);
    assert.equal(fetched, 1);
    assert.equal(Buffer.compare(await readFile(p), before), 0, "the old file is intact");
    assert.deepEqual(await readdir(sub), ["m.eqx"], "no temp file remains");
    // A big write that fails halfway behaves the same: .w (2 MiB) reaches the temp file before .b's fetch throws.
    const bigW = new Dense(512, 1024, "relu");
    const broken2 = bigW.replace({ b: new DeviceArray(owner, 2, "float32", [1024], "cpu:0") as unknown as NDArray });
    await assert.rejects(broken2.serialize(join(sub, "m")), /mid-write/);
    const tmp = during.find(([n]) => n !== "m.eqx");
    assert.ok(tmp && /^\.m\.eqx\.\d+\.[0-9a-f]{12}\.tmp$/.test(tmp[0]) && tmp[1] >= 32 + 2 * 2 ** 20, `a half-written temp file existed: ${JSON.stringify(during)}`);
    assert.equal(Buffer.compare(await readFile(p), before), 0);
    assert.deepEqual(await readdir(sub), ["m.eqx"]);
    // and with nothing there before, nothing is left
    await assert.rejects(broken.serialize(join(sub, "fresh")), /mid-write/);
    assert.deepEqual(await readdir(sub), ["m.eqx"]);
  });

  it("refuses a bigint that numpy could only pickle", async () => {
    class B extends Serializable {
      n = 2n ** 64n;
    }
    await expectRejects(new B().serialize(join(dir, "bigint")), SerializationError, /the bigint 18446744073709551616 at \.n does not fit in int64 or uint64/);
  });
});

describe("serializable: with a session", () => {
  const jb = useSession();

  it("fetches DeviceArray leaves, and puts loaded arrays on the device with {session}", async () => {
    const host = randomized(new Net([2, 3], "dev"), 8);
    const onDevice = (await jb().put(host)) as unknown as Net;
    assert.ok(onDevice.layers[0]!.w instanceof DeviceArray);
    const p = await onDevice.serialize(join(dir, "device"));
    const hostFile = await host.serialize(join(dir, "host"));
    assert.equal(Buffer.compare(await readFile(p), await readFile(hostFile)), 0, "same bytes as the host copy");
    const back = await Net.deserialize({ path: p, session: jb() }, [2, 3], "dev");
    assert.ok(back.layers[0]!.w instanceof DeviceArray);
    assert.equal(typeof back.lr, "number");
    assert.ok(treeEqual(await jb().get(back), host));
  });
});
