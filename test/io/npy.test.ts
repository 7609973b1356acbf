import assert from "node:assert/strict";
import { DTYPES, type DType } from "../../src/values/dtype.js";
import { NDArray, array } from "../../src/values/ndarray.js";
import { NpyFormatError, decodeNpy, decodeNpyHeader, encodeNpy, encodeNpyHeader, loadNpy, npyDescr } from "../../src/io/npy.js";
import { runPython } from "../support/python.js";
import { randomArray } from "../support/random.js";

const SHAPES: number[][] = [[], [0], [1], [7], [2, 3], [3, 0, 2], [2, 3, 4], [1000], [12345678, 0], Array(20).fill(1), Array(36).fill(1), [2, 1, 3, ...Array(29).fill(1)]];
// 36 dimensions: the float32 header before padding is exactly a multiple of 64 bytes, so numpy pads by a full 64.

const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "base64"));

const PY_PRELUDE = `
import json, sys, base64, io, warnings
import numpy as np, ml_dtypes
import jax
jax.config.update("jax_enable_x64", True)  # int64 / float64 leaves stay 64-bit in jnp.load
import jax.numpy as jnp
warnings.simplefilter("error")
def npdtype(name):
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)
def save(a, **kw):
    f = io.BytesIO(); np.save(f, a, **kw); return f.getvalue()
def b64(b): return base64.b64encode(b).decode()
def unb64(s): return base64.b64decode(s)
`;

function bytesEqual(a: Uint8Array, b: Uint8Array, msg: string): void {
  assert.equal(a.length, b.length, `${msg}: length`);
  const i = a.findIndex((x, k) => x !== b[k]);
  assert.equal(i, -1, `${msg}: first differing byte at ${i}`);
}

function expectNpyError(f: () => unknown, offset: number, re: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof NpyFormatError, `expected NpyFormatError, got ${String(e)}`);
    assert.equal(e.offset, offset, `offset in ${e.message}`);
    assert.match(e.message, re);
    assert.match(e.message, new RegExp(`at byte offset ${offset}\\)`));
    return true;
  });
}

describe("npy: against numpy", () => {
  it("writes exactly np.save's bytes for every dtype and shape (0-d, empty, 1-32 dims), and reads numpy's", async () => {
    const cases: { dtype: DType; shape: number[]; a: NDArray }[] = [];
    for (const dtype of DTYPES) for (const shape of SHAPES) cases.push({ dtype, shape, a: randomArray(dtype, shape) });
    const code = `${PY_PRELUDE}
cases = json.load(sys.stdin)
out = []
for c in cases:
    raw = unb64(c["data"])
    a = np.frombuffer(raw, dtype=npdtype(c["dtype"])).reshape(c["shape"])
    ours = unb64(c["ours"])
    back = np.load(io.BytesIO(ours))
    jback = jnp.load(io.BytesIO(ours)) if c["dtype"] == "bfloat16" else back  # jnp.load is what turns V2 into bfloat16
    out.append({
        "numpy": b64(save(a)),
        "load_ok": back.shape == tuple(c["shape"]) and back.tobytes() == raw and (back.dtype.str == a.dtype.str or (c["dtype"] == "bfloat16" and back.dtype.str == "|V2")),
        "jnp_dtype": str(jback.dtype) if hasattr(jback, "dtype") else None,
    })
print(json.dumps(out))
`;
    const py = await runPython<{ numpy: string; load_ok: boolean; jnp_dtype: string }[]>(
      code,
      cases.map((c) => ({ dtype: c.dtype, shape: c.shape, data: b64(c.a.bytes()), ours: b64(encodeNpy(c.a)) })),
    );
    cases.forEach((c, i) => {
      const name = `${c.dtype}[${c.shape.join(", ")}]`;
      const numpy = unb64(py[i]!.numpy);
      bytesEqual(encodeNpy(c.a), numpy, name);
      assert.ok(py[i]!.load_ok, `${name}: np.load reads ours`);
      assert.equal(py[i]!.jnp_dtype, c.dtype, `${name}: jnp.load dtype`);
      const { array: back, end } = decodeNpy(numpy);
      assert.equal(end, numpy.length);
      assert.equal(back.dtype, c.dtype);
      assert.deepEqual(back.shape, c.shape);
      bytesEqual(back.bytes(), c.a.bytes(), `${name}: data read back`);
      assert.equal(encodeNpyHeader(c.dtype, c.shape).length % 64, 0);
    });
  });

  it("writes numpy's descriptors, <V2 for bfloat16 as np.save of ml_dtypes.bfloat16 does", async () => {
    const py = await runPython<Record<string, string>>(`${PY_PRELUDE}
names = json.load(sys.stdin)
print(json.dumps({n: npdtype(n).str for n in names}))
`, [...DTYPES]);
    for (const dt of DTYPES) assert.equal(npyDescr(dt), py[dt], dt);
    assert.equal(npyDescr("bfloat16"), "<V2");
  });

  it("reads what numpy writes in other forms: big-endian, versions 2.0 and 3.0, |V2", async () => {
    const code = `${PY_PRELUDE}
from numpy.lib import format as fmt
def write(a, version):
    f = io.BytesIO(); fmt.write_array(f, a, version=version); return f.getvalue()
out = {
    "be_f4": b64(save(np.array([1.5, -2.25, 3e30], dtype=">f4"))),
    "be_i8": b64(save(np.array([[1, -2], [2**40, -(2**62)]], dtype=">i8"))),
    "be_c8": b64(save(np.array([1+2j, -3.5-4j], dtype=">c8"))),
    "be_f2": b64(save(np.array([0.5, 65504], dtype=">f2"))),
    "be_u2": b64(save(np.array([1, 65535], dtype=">u2"))),
    "v2": b64(write(np.arange(6, dtype=np.int32).reshape(2, 3), (2, 0))),
    "v3": b64(write(np.arange(3, dtype=np.float64), (3, 0))),
    "void": b64(save(np.array([1.0, -2.0], dtype=ml_dtypes.bfloat16).view("V2"))),
}
print(json.dumps(out))
`;
    const py = await runPython<Record<string, string>>(code);
    const load = (k: string): NDArray => loadNpy(unb64(py[k]!));
    assert.deepEqual(load("be_f4").toList(), [1.5, -2.25, Math.fround(3e30)]);
    assert.equal(load("be_f4").dtype, "float32");
    assert.deepEqual(load("be_i8").toList(), [[1, -2], [2 ** 40, -(2 ** 62)]]);
    assert.deepEqual(load("be_c8").toList(), [{ re: 1, im: 2 }, { re: -3.5, im: -4 }]);
    assert.deepEqual(load("be_f2").toList(), [0.5, 65504]);
    assert.deepEqual(load("be_u2").toList(), [1, 65535]);
    assert.equal(decodeNpyHeader(unb64(py.v2!)).version.join("."), "2.0");
    assert.deepEqual(load("v2").toList(), [[0, 1, 2], [3, 4, 5]]);
    assert.deepEqual(decodeNpyHeader(unb64(py.v3!)).version, [3, 0]);
    assert.deepEqual(load("v3").toList(), [0, 1, 2]);
    const v = load("void");
    assert.equal(v.dtype, "bfloat16");
    assert.deepEqual(v.toList(), [1, -2]);
  });

  it("pads a header that is already 64-aligned by a full 64 spaces, as numpy does (checked against np.save above)", () => {
    const h = encodeNpyHeader("float32", Array(36).fill(1));
    const text = Buffer.from(h.subarray(10)).toString("latin1");
    const dictEnd = text.indexOf("}") + 1;
    assert.equal((10 + dictEnd + 20 + 1) % 64, 0, "unpadded length is a multiple of 64");
    assert.equal(text.length - dictEnd - 20 - 1, 64, "64 spaces of padding");
    assert.ok(text.endsWith(" \n"));
  });

  it("round-trips in TypeScript, keeping NaN payloads and -0", () => {
    const a = new NDArray(new Float32Array([NaN, -0, Infinity]), [3]);
    new Uint32Array(a.data.buffer)[0] = 0x7fc00123;
    const back = loadNpy(encodeNpy(a));
    assert.equal(new Uint32Array(back.data.buffer, back.data.byteOffset, 3)[0], 0x7fc00123);
    assert.ok(Object.is(back.data[1], -0));
    const z = loadNpy(encodeNpy(array(7n, "int64")));
    assert.deepEqual(z.shape, []);
    assert.equal(z.item(), 7);
  });

  it("reads records one after another at an offset, as a leaf stream holds them", () => {
    const a = array([1, 2, 3], "int16");
    const b = array([[true, false]], "bool");
    const buf = Buffer.concat([Buffer.from([9, 9, 9]), encodeNpy(a), encodeNpy(b)]);
    const r1 = decodeNpy(buf, 3);
    const r2 = decodeNpy(buf, r1.end);
    assert.equal(r2.end, buf.length);
    assert.deepEqual(r1.array.toList(), [1, 2, 3]);
    assert.deepEqual(r2.array.toList(), [[true, false]]);
  });
});

describe("npy: strict reading", () => {
  const good = encodeNpy(array([[1, 2, 3]], "float32"));
  const headerLen = good[8]! | (good[9]! << 8);
  const dataAt = 10 + headerLen;

  /** A v1 record whose header dict text is `dict` (padded numpy's way), followed by `data`. */
  function withHeader(dict: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
    const hlen = dict.length + 1;
    const pad = 64 - ((10 + hlen) % 64);
    const text = dict + " ".repeat(pad) + "\n";
    const out = new Uint8Array(10 + text.length + data.length);
    out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, text.length & 0xff, text.length >> 8]);
    out.set(Buffer.from(text, "latin1"), 10);
    out.set(data, 10 + text.length);
    return out;
  }

  it("refuses a bad magic string, naming the offset", () => {
    const bad = good.slice();
    bad[1] = 0x4f;
    expectNpyError(() => loadNpy(bad), 0, /not an NPY record: the magic string/);
    const buf = Buffer.concat([Buffer.alloc(5), Buffer.from("PK\x03\x04 a zip, not npy")]);
    expectNpyError(() => decodeNpy(buf, 5), 5, /magic string should be 93 4e 55 4d 50 59/);
  });

  it("refuses an unsupported version", () => {
    for (const [maj, min] of [
      [4, 0],
      [1, 1],
      [0, 9],
    ] as const) {
      const bad = good.slice();
      bad[6] = maj;
      bad[7] = min;
      expectNpyError(() => loadNpy(bad), 6, new RegExp(`unsupported NPY format version ${maj}\\.${min}`));
    }
  });

  it("refuses malformed header dicts", () => {
    const cases: [string, RegExp][] = [
      ["{'descr': '<f4', 'shape': (3,), }", /exactly the keys 'descr', 'fortran_order', 'shape'; it has 'descr', 'shape'/],
      ["{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1, }", /it has 'descr', 'extra', 'fortran_order', 'shape'/],
      ["{'descr': '<f4', 'fortran_order': False, 'shape': [3], }", /shape must be a tuple of non-negative ints, got a list/],
      ["{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", /shape must be a tuple of non-negative ints, got 3/],
      ["{'descr': '<f4', 'fortran_order': False, 'shape': ('3',), }", /shape must be a tuple/],
      ["{'descr': '<f4', 'fortran_order': 0, 'shape': (3,), }", /fortran_order must be True or False, got 0/],
      ["{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", /descr must be a str \(structured dtypes are not supported\)/],
      ["{'descr': '<f4', 'fortran_order': False, 'shape': (3,) }junk", /unexpected text after the dict/],
      ["['descr', '<f4']", /the header is not a dict/],
      ["{'descr': '<f4' 'fortran_order': False}", /expected ',' or '}'/],
      ["{'descr': '<f4', 'fortran_order': False, 'shape': (3,), ", /expected a string|expected/],
      ["{'descr': '<f4", /unterminated string/],
    ];
    for (const [dict, re] of cases) expectNpyError(() => decodeNpyHeader(withHeader(dict)), 10, re);
  });

  it("refuses dtypes jaxbridge does not have and Fortran order", async () => {
    expectNpyError(() => decodeNpyHeader(withHeader("{'descr': '<M8[ns]', 'fortran_order': False, 'shape': (3,), }")), 10, /descr '<M8\[ns\]' is not a dtype jaxbridge supports/);
    expectNpyError(() => decodeNpyHeader(withHeader("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }")), 10, /descr '\|O'/);
    expectNpyError(() => decodeNpyHeader(withHeader("{'descr': '|f4', 'fortran_order': False, 'shape': (3,), }")), 10, /descr '\|f4'/);
    expectNpyError(() => decodeNpyHeader(withHeader("{'descr': '>V2', 'fortran_order': False, 'shape': (3,), }")), 10, /descr '>V2'/);
    const py = await runPython<string>(`${PY_PRELUDE}
print(json.dumps(b64(save(np.asfortranarray(np.arange(6.0).reshape(2, 3))))))
`);
    expectNpyError(() => loadNpy(unb64(py)), 10, /Fortran order \(fortran_order: True\), which is not supported/);
  });

  it("accepts other spacing and key order, as numpy's literal_eval does", () => {
    const h = decodeNpyHeader(withHeader(`{"shape":(2,3),"fortran_order":False,"descr":"<i2"}`, new Uint8Array(12)));
    assert.equal(h.dtype, "int16");
    assert.deepEqual(h.shape, [2, 3]);
  });

  it("refuses a record cut short anywhere, with the offset where it ends", () => {
    expectNpyError(() => loadNpy(good.subarray(0, 5)), 0, /cut short: 5 bytes left, the magic string and version need 8/);
    expectNpyError(() => loadNpy(good.subarray(0, 9)), 8, /cut short: the header length field needs 2 bytes, 1 left/);
    expectNpyError(() => loadNpy(good.subarray(0, 40)), 10, new RegExp(`cut short: the header is ${headerLen} bytes, 30 left`));
    expectNpyError(() => loadNpy(good.subarray(0, good.length - 1)), dataAt, /cut short: float32\(1, 3\) needs 12 data bytes, 11 left/);
    expectNpyError(() => loadNpy(Buffer.concat([good, Buffer.from([0])])), good.length, /1 trailing bytes after the NPY record/);
  });

  it("checks an expected dtype and shape", () => {
    expectNpyError(() => decodeNpy(good, 0, { dtype: "float64" }), 0, /has dtype float32 \(descr '<f4'\), expected float64 \(descr '<f8'\)/);
    expectNpyError(() => decodeNpy(good, 0, { shape: [3] }), 0, /has shape \(1, 3\), expected \(3,\)/);
    assert.deepEqual(decodeNpy(good, 0, { dtype: "float32", shape: [1, 3] }).array.toList(), [[1, 2, 3]]);
  });
});
