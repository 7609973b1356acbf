import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RecordBatch, Schema, Table, tableFromIPC, tableToIPC, type Vector, vectorFromArray } from "apache-arrow";
import {
  ArrowFileWriter,
  fromArrow,
  getArrow,
  getArrowIPC,
  parseKeyPath,
  putArrow,
  readArrowFile,
  toArrow,
  toIPC,
  writeArrowFile,
} from "../../src/io/arrow.js";
import { DTYPES, type DType } from "../../src/values/dtype.js";
import { BridgeInputError, SidecarError } from "../../src/values/errors.js";
import { DeviceArray } from "../../src/values/device-array.js";
import { Module } from "../../src/values/module.js";
import { NDArray, array } from "../../src/values/ndarray.js";
import { flattenWithPath, keystr } from "../../src/values/tree.js";
import { runPython } from "../support/python.js";
import { randomArray } from "../support/random.js";
import { useSession } from "../support/session.js";


const b64 = (a: NDArray): string => Buffer.from(a.bytes()).toString("base64");

/** Every dtype in several per-row shapes, `rows` rows each: `{float32: [a, b, ...], ...}`. */
function everyDtype(rows: number): Record<string, NDArray[]> {
  const tree: Record<string, NDArray[]> = {};
  for (const dt of DTYPES) tree[dt] = [[rows], [rows, 3], [rows, 2, 3], [rows, 0, 2], [rows, 9]].map((s) => randomArray(dt, s));
  return tree;
}

/** The column description the Python oracle checks, from the same bytes. */
function specs(tree: unknown): { name: string; dtype: DType; shape: number[]; b64: string }[] {
  return flattenWithPath(tree).leaves.flatMap(({ path, value }) => (value instanceof NDArray ? [{ name: keystr(path), dtype: value.dtype, shape: [...value.shape], b64: b64(value) }] : []));
}

function leafAt(tree: unknown, name: string): unknown {
  let x: unknown = tree;
  for (const e of parseKeyPath(name)) x = (x as Record<string | number, unknown>)[e.kind === "index" ? e.index : e.kind === "key" ? e.key : e.name];
  return x;
}

function assertSameArray(got: unknown, want: { dtype: string; shape: number[]; b64: string }, what: string): void {
  assert.ok(got instanceof NDArray, `${what} is not an NDArray`);
  assert.equal(got.dtype, want.dtype, what);
  assert.deepEqual([...got.shape], want.shape, what);
  assert.equal(b64(got), want.b64, `${what}: bytes differ`);
}

/** Checks a file against the conventions with pyarrow alone (types rebuilt by hand, values from the same bytes). */
const ORACLE_READ = String.raw`
import base64, json, sys
import numpy as np, pyarrow as pa, pyarrow.feather
spec = json.load(sys.stdin)
path = spec["path"]
if spec["format"] == "file":
    table = pa.ipc.open_file(path).read_all()
    ft = pa.feather.read_table(path)  # values hold random NaNs, so compare schema and size
    assert ft.schema.equals(table.schema, check_metadata=True) and ft.num_rows == table.num_rows
else:
    table = pa.ipc.open_stream(pa.OSFile(path)).read_all()
VALUE = {"bool": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
         "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
         "float16": pa.float16(), "float32": pa.float32(), "float64": pa.float64(),
         "bfloat16": pa.uint16(), "complex64": pa.float32(), "complex128": pa.float64()}
STORAGE = {"bool": np.uint8, "bfloat16": np.uint16, "complex64": np.float32, "complex128": np.float64}
problems = []
if table.column_names != [c["name"] for c in spec["columns"]]:
    problems.append(f"names {table.column_names}")
for c in spec["columns"]:
    name, dt, shape = c["name"], c["dtype"], c["shape"]
    field = table.schema.field(name)
    dims = shape[1:] + ([2] if dt.startswith("complex") else [])
    t = VALUE[dt]
    for k in reversed(dims):
        t = pa.list_(t, k)
    if field.type != t:
        problems.append(f"{name}: type {field.type} != {t}")
    if field.nullable:
        problems.append(f"{name}: nullable")
    want_meta = {b"jaxbridge.dtype": dt.encode(), b"jaxbridge.shape": json.dumps(shape[1:], separators=(",", ":")).encode()}
    if field.metadata != want_meta:
        problems.append(f"{name}: metadata {field.metadata}")
    col = table.column(name)
    if len(col) != shape[0] or table.num_rows != shape[0]:
        problems.append(f"{name}: {len(col)} rows")
    v = col.combine_chunks()
    for _ in dims:
        v = v.flatten()
    got = v.to_numpy(zero_copy_only=False)
    want = np.frombuffer(base64.b64decode(c["b64"]), dtype=STORAGE[dt] if dt in STORAGE else np.dtype(dt))
    if dt == "bool":
        want = want.astype(bool)
    if got.dtype != want.dtype or got.tobytes() != want.tobytes():
        problems.append(f"{name}: values differ ({got.dtype} vs {want.dtype})")
table.to_pylist()  # readable as plain Python rows
print(json.dumps({"rows": table.num_rows, "problems": problems}))
`;

describe("arrow: toArrow, read by pyarrow (the oracle)", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "jaxbridge-arrow-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const rows of [5, 0]) {
    for (const format of ["file", "stream"] as const) {
      it(`every dtype and row shape, ${rows} rows, IPC ${format} format: types, metadata and values as documented`, async () => {
        const tree = everyDtype(rows);
        const path = join(dir, `every-${rows}.${format === "file" ? "arrow" : "arrows"}`);
        await writeArrowFile(path, tree, { format });
        const res = await runPython<{ rows: number; problems: string[] }>(ORACLE_READ, { path, format, columns: specs(tree) });
        assert.deepEqual(res.problems, []);
        assert.equal(res.rows, rows);
      });
    }
  }

  it("names columns by key path, lists and dicts and Module fields alike", async () => {
    class Lin extends Module {
      w: NDArray;
      act: string;
      static staticFields = ["act"];
      constructor(w: NDArray, act: string) {
        super();
        this.w = w;
        this.act = act;
      }
    }
    const tree = { obs: randomArray("float32", [4, 2]), "it's": [randomArray("int32", [4]), null, new Lin(randomArray("bfloat16", [4, 3]), "relu")], n: 3 };
    const t = toArrow(tree);
    assert.deepEqual(
      t.schema.fields.map((f) => f.name),
      [`["it's"][0]`, `["it's"][2].w`, "['obs']"],
    );
    const path = join(dir, "names.arrow");
    await writeArrowFile(path, t);
    const res = await runPython<{ rows: number; problems: string[] }>(ORACLE_READ, { path, format: "file", columns: specs(tree) });
    assert.deepEqual(res.problems, []);
  });
});

describe("arrow: pyarrow writes, fromArrow reads (bytes equal)", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "jaxbridge-arrow-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Tables built by hand with pyarrow following the conventions; the expected arrays as raw bytes. */
  const ORACLE_WRITE = String.raw`
import base64, json, sys
import ml_dtypes, numpy as np, pyarrow as pa
spec = json.load(sys.stdin)
rng = np.random.default_rng(3)
n = spec["rows"]
def rand(dt, shape):
    nbytes = int(np.prod(shape)) * np.dtype(dt).itemsize
    a = np.frombuffer(rng.bytes(nbytes), dtype=dt).reshape(shape).copy()
    return (a.view(np.uint8) & 1).astype(bool) if dt == np.bool_ else a
cases = {
    "['f32']": (rand(np.float32, (n, 2, 3)), "float32"),
    "['f64']": (rand(np.float64, (n,)), "float64"),
    "['f16']": (rand(np.float16, (n, 4)), "float16"),
    "['bf16']": (rand(np.uint16, (n, 3)).view(ml_dtypes.bfloat16), "bfloat16"),
    "['c64']": (rand(np.complex64, (n, 2)), "complex64"),
    "['c128']": (rand(np.complex128, (n,)), "complex128"),
    "['b']": (rand(np.bool_, (n, 3)), "bool"),
    "['b1']": (rand(np.bool_, (n,)), "bool"),
    "['i8']": (rand(np.int8, (n,)), "int8"),
    "['i16']": (rand(np.int16, (n, 0)), "int16"),
    "['i32']": (rand(np.int32, (n,)), "int32"),
    "['i64']": (rand(np.int64, (n, 2)), "int64"),
    "['u8']": (rand(np.uint8, (n,)), "uint8"),
    "['u16']": (rand(np.uint16, (n,)), "uint16"),
    "['u32']": (rand(np.uint32, (n, 1)), "uint32"),
    "['u64']": (rand(np.uint64, (n,)), "uint64"),
    "['list'][0]": (rand(np.float32, (n,)), "float32"),
    "['list'][2]['x']": (rand(np.int32, (n,)), "int32"),
}
cols, fields, out = [], [], []
for name, (a, dt) in cases.items():
    if dt == "bfloat16":
        storage = a.view(np.uint16)
    elif dt.startswith("complex"):
        storage = a.view(np.float32 if dt == "complex64" else np.float64).reshape(*a.shape, 2)
    else:
        storage = a
    col = pa.array(storage.reshape(-1))
    dims = list(storage.shape[1:])
    for j in reversed(range(len(dims))):
        if dims[j]:
            col = pa.FixedSizeListArray.from_arrays(col, dims[j])
        else:  # from_arrays refuses list_size 0
            col = pa.Array.from_buffers(pa.list_(col.type, 0), n * int(np.prod(dims[:j])), [None], children=[col])
    meta = {"jaxbridge.dtype": dt, "jaxbridge.shape": json.dumps(list(a.shape[1:]), separators=(",", ":"))}
    cols.append(col)
    fields.append(pa.field(name, col.type, nullable=False, metadata=meta))
    out.append({"name": name, "dtype": dt, "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()})
table = pa.Table.from_arrays(cols, schema=pa.schema(fields))
cuts = spec["cuts"]
batches = [table.slice(a, b - a) for a, b in zip([0] + cuts, cuts + [n])] if cuts else [table]
writer = pa.ipc.new_file if spec["format"] == "file" else pa.ipc.new_stream
with writer(spec["path"], table.schema) as w:
    for b in batches:
        w.write_table(b)
print(json.dumps(out))
`;

  type Col = { name: string; dtype: string; shape: number[]; b64: string };

  for (const { rows, cuts, format } of [
    { rows: 7, cuts: [], format: "file" },
    { rows: 13, cuts: [3, 4, 11], format: "stream" },
    { rows: 0, cuts: [], format: "stream" },
  ]) {
    it(`${rows} rows in ${cuts.length + 1} record batch(es), ${format} format`, async () => {
      const path = join(dir, `py-${rows}.${format}`);
      const cols = await runPython<Col[]>(ORACLE_WRITE, { rows, cuts, format, path });
      const tree = fromArrow(await readArrowFile(path));
      for (const c of cols) assertSameArray(leafAt(tree, c.name), c, c.name);
      const list = (tree as { list: unknown[] }).list;
      assert.equal(list.length, 3);
      assert.equal(list[1], null, "a list index with no column comes back as null");
    });
  }

  it("reads a table without jaxbridge metadata by its Arrow types (plainNames)", async () => {
    const path = join(dir, "plain.arrow");
    const cols = await runPython<Col[]>(
      String.raw`
import base64, json, sys, numpy as np, pyarrow as pa, pyarrow.feather
path = json.load(sys.stdin)
h = np.arange(6, dtype=np.float16).reshape(3, 2)
n = np.arange(3, dtype=np.uint16)
t = pa.table({"obs": pa.FixedSizeListArray.from_arrays(pa.array(h.reshape(-1)), 2), "n": pa.array(n), "ok": pa.array([True, False, True])})
pa.feather.write_feather(t, path, compression="uncompressed")
print(json.dumps([{"name": k, "dtype": str(a.dtype), "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()} for k, a in [("obs", h), ("n", n), ("ok", np.array([True, False, True]))]]))
`,
      path,
    );
    const tree = fromArrow(await readArrowFile(path), { plainNames: true }) as Record<string, NDArray>;
    assert.deepEqual(Object.keys(tree), ["n", "obs", "ok"]);
    for (const c of cols) assertSameArray(tree[c.name], c, c.name);
    assert.throws(() => fromArrow(tableFromIPC(readFileSync(path))), (e: unknown) => e instanceof BridgeInputError && /column "obs" is not a key path/.test(e.message));
  });
});

describe("arrow: in TypeScript", () => {
  it("views the NDArray buffers when writing and the IPC bytes when reading", () => {
    const a = randomArray("float32", [6, 2, 3]);
    const c = randomArray("complex128", [6]);
    const t = toArrow({ a, c });
    let d = t.getChild("['a']")!.data[0]!;
    while (d.children.length) d = d.children[0]!;
    assert.equal(d.values, a.data, "the column's values are the NDArray's own TypedArray");
    const bytes = tableToIPC(t, "stream");
    const back = fromArrow(tableFromIPC(bytes)) as { a: NDArray; c: NDArray };
    assert.equal(back.a.data.buffer, bytes.buffer, "fromArrow views the IPC bytes");
    assert.equal(back.c.data.buffer, bytes.buffer);
    assert.equal(b64(back.a), b64(a));
    assert.equal(b64(back.c), b64(c));
  });

  it("round-trips every dtype through IPC bytes, 0 rows included", () => {
    for (const rows of [4, 0]) {
      const tree = everyDtype(rows);
      const back = fromArrow(tableFromIPC(toIPC(tree, "file")));
      for (const s of specs(tree)) assertSameArray(leafAt(back, s.name), s, s.name);
    }
  });

  it("packs bool into Arrow bits and back, at any length", () => {
    for (const n of [1, 7, 8, 9, 64, 65]) {
      const a = randomArray("bool", [n]);
      const t = toArrow({ a });
      assert.equal(t.getChild("['a']")!.data[0]!.values.byteLength, Math.ceil(n / 8));
      assert.deepEqual([...t.getChild("['a']")!].map(Number), [...a.data]);
      assert.equal(b64((fromArrow(tableFromIPC(tableToIPC(t))) as { a: NDArray }).a), b64(a));
    }
    // A sliced table starts mid-byte in the bits (and mid-buffer in the other columns).
    const b = randomArray("bool", [11, 3]);
    const f = randomArray("float64", [11, 2]);
    const part = fromArrow(toArrow({ b, f }).slice(3, 9)) as { b: NDArray; f: NDArray };
    assert.deepEqual([...part.b.data], [...b.data.subarray(9, 27)]);
    assert.deepEqual([...part.f.data], [...(f.data as Float64Array).subarray(6, 18)]);
  });

  it("rebuilds lists and dicts from the names; Modules come back as plain objects unless `like` is given", () => {
    class Lin extends Module {
      w: NDArray;
      act: string;
      static staticFields = ["act"];
      constructor(w: NDArray, act: string) {
        super();
        this.w = w;
        this.act = act;
      }
    }
    const w = randomArray("float32", [3, 2]);
    const x = randomArray("int64", [3]);
    const tree = { layers: [new Lin(w, "tanh"), null, { x }], lr: 0.1 };
    const t = toArrow(tree);
    const guessed = fromArrow(t) as { layers: [{ w: NDArray }, null, { x: NDArray }] };
    assert.ok(!(guessed.layers[0] instanceof Lin));
    assert.equal(b64(guessed.layers[0].w), b64(w));
    assert.equal(guessed.layers[1], null);
    assert.equal(b64(guessed.layers[2].x), b64(x));
    const rebuilt = fromArrow(t, { like: tree }) as typeof tree;
    assert.ok(rebuilt.layers[0] instanceof Lin);
    assert.equal(rebuilt.layers[0].act, "tanh");
    assert.equal(rebuilt.lr, 0.1);
    assert.equal(b64((rebuilt.layers[2] as { x: NDArray }).x), b64(x));
    assert.throws(() => fromArrow(t, { like: { ...tree, lr: randomArray("float32", [3]) } }), /\['lr'\]" have no column/);
    assert.throws(() => fromArrow(t, { like: { layers: tree.layers.slice(0, 2) } }), /columns "\['layers'\]\[2\]\['x'\]" are not array leaves of the template/);
    assert.throws(() => fromArrow(t, { like: { ...tree, layers: [new Lin(randomArray("float64", [3, 2]), "tanh"), null, { x }] } }), /holds float32, the template's leaf is float64/);
    const single = fromArrow(toArrow(w)) as NDArray;
    assert.equal(b64(single), b64(w), "a bare array is the column named ''");
  });

  it("parses every key path keystr writes, odd dict keys included", () => {
    for (const key of ["plain", "it's", 'say "hi"', "both ' and \"", "tab\there", "new\nline", "back\\slash", "é€😀", "\u0000\u007f\u200b", "[0]", ".x", ""]) {
      const path = [{ kind: "key" as const, key }, { kind: "index" as const, index: 12 }, { kind: "attr" as const, name: "w" }];
      assert.deepEqual(parseKeyPath(keystr(path)), path, key);
    }
    assert.deepEqual(parseKeyPath(`["a"]`), [{ kind: "key", key: "a" }]);
    for (const bad of ["obs", "[01]", "['a'", "[a]", ".", "['a']x", "['\\q']"]) assert.throws(() => parseKeyPath(bad), BridgeInputError, bad);
  });

  it("refuses trees that are not tables, naming the leaves", () => {
    assert.throws(
      () => toArrow({ a: randomArray("float32", [3, 2]), b: [randomArray("int32", [4])] }),
      (e: unknown) => e instanceof BridgeInputError && e.message.includes("['a'] has 3") && e.message.includes("['b'][0] has 4"),
    );
    assert.throws(() => toArrow({ s: randomArray("float32", []) }), (e: unknown) => e instanceof BridgeInputError && e.message.includes("['s']") && /scalar/.test(e.message));
    assert.throws(() => toArrow({ n: 1, s: "x" }), /at least one NDArray/);
  });

  it("refuses tables it cannot map, naming the column", () => {
    const ok = randomArray("float32", [2]);
    const withColumn = (name: string, vector: Vector): Table => {
      const base = toArrow({ ok });
      return new Table({ "['ok']": base.getChild("['ok']")!, [name]: vector });
    };
    const cases: [Table, RegExp][] = [
      [withColumn("['s']", vectorFromArray(["a", "b"])), /column "\['s'\]" has Arrow type (Utf8|Dictionary)/],
      [withColumn("['n']", vectorFromArray([1.5, null])), /column "\['n'\]" has 1 null/],
      [withColumn("obs", vectorFromArray([1, 2])), /column "obs" is not a key path/],
      [withColumn("['ok'][0]", vectorFromArray([1, 2])), /column "\['ok'\]" is a leaf, but column "\['ok'\]\[0\]"/],
      [withColumn("[0]", vectorFromArray([1, 2])), /disagree: one makes a dict, the other a list/],
      [withColumn(`["ok"]`, vectorFromArray([1, 2])), /name the same key path/],
    ];
    for (const [t, re] of cases) assert.throws(() => fromArrow(t), (e: unknown) => e instanceof BridgeInputError && re.test(e.message), String(re));
    // Metadata that contradicts the type.
    const t = toArrow({ x: randomArray("float32", [2, 3]) });
    const f = t.schema.fields[0]!;
    for (const [k, v, re] of [
      ["jaxbridge.dtype", "bfloat16", /jaxbridge.dtype=bfloat16 but Arrow type/],
      ["jaxbridge.dtype", "object", /names dtype "object"/],
      ["jaxbridge.shape", "[4]", /jaxbridge.shape=\[4\] but its Arrow type .* rows of shape \[3\]/],
    ] as const) {
      const meta = new Map(f.metadata);
      meta.set(k, v);
      const schema = new Schema([f.clone({ metadata: meta })]);
      const bad = new Table(schema, [new RecordBatch(schema, t.batches[0]!.data)]);
      assert.throws(() => fromArrow(bad), (e: unknown) => e instanceof BridgeInputError && e.message.includes(`column "['x']"`) && re.test(e.message), String(re));
    }
  });

  it("appends per-step batches to a file pandas-style readers can read", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jaxbridge-arrow-"));
    try {
      for (const format of ["stream", "file"] as const) {
        const path = join(dir, "sub", `steps.${format}`);
        const steps = [0, 1, 2].map((i) => ({ step: array([i, i], "int32"), obs: randomArray("float32", [2, 3]) }));
        const w = await ArrowFileWriter.open(path, { format });
        for (const s of steps) w.write(s);
        assert.throws(() => w.write({ step: array([1], "int64"), obs: randomArray("float32", [1, 3]) }), /column "\['step'\]" was int32/);
        assert.throws(() => w.write({ obs: randomArray("float32", [1, 3]) }), /missing "\['step'\]"/);
        await w.close();
        const res = await runPython<{ rows: number; batches: number; step: number[]; obs: string }>(
          String.raw`
import base64, json, sys, pyarrow as pa
spec = json.load(sys.stdin)
r = pa.ipc.open_file(spec["path"]) if spec["format"] == "file" else pa.ipc.open_stream(pa.OSFile(spec["path"]))
t = r.read_all()
obs = t.column("['obs']").combine_chunks().flatten().to_numpy()
print(json.dumps({"rows": t.num_rows, "batches": len(t.to_batches()), "step": t.column("['step']").to_pylist(), "obs": base64.b64encode(obs.tobytes()).decode()}))
`,
          { path, format },
        );
        assert.deepEqual(res.step, [0, 0, 1, 1, 2, 2]);
        assert.equal(res.batches, 3);
        assert.equal(res.obs, Buffer.concat(steps.map((s) => Buffer.from(s.obs.bytes()))).toString("base64"));
        const back = fromArrow(await readArrowFile(path)) as { step: NDArray };
        assert.deepEqual([...back.step.data], [0, 0, 1, 1, 2, 2]);
      }
      const empty = join(dir, "never-written.arrows");
      await (await ArrowFileWriter.open(empty)).close();
      assert.throws(() => readFileSync(empty), /ENOENT/, "a writer closed before any write leaves no file");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("arrow: through the sidecar (putArrow / getArrow)", () => {
  const jb = useSession();
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "jaxbridge-arrow-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const rows of [5, 0]) {
    it(`putArrow then getArrow returns the same bytes for every dtype (${rows} rows)`, async () => {
      const tree = everyDtype(rows);
      const dev = (await putArrow(jb(), toArrow(tree))) as Record<string, DeviceArray[]>;
      for (const dt of DTYPES) {
        dev[dt]!.forEach((d, i) => {
          assert.ok(d instanceof DeviceArray);
          assert.equal(d.dtype, dt);
          assert.deepEqual([...d.shape], [...tree[dt]![i]!.shape]);
        });
      }
      // The device holds the right values (fetched the ordinary way).
      const host = (await jb().get(dev)) as unknown;
      for (const s of specs(tree)) assertSameArray(leafAt(host, s.name), s, `get ${s.name}`);
      const table = await getArrow(jb(), dev);
      const back = fromArrow(table);
      for (const s of specs(tree)) assertSameArray(leafAt(back, s.name), s, `getArrow ${s.name}`);
      // Same types and metadata as toArrow writes.
      assert.equal(String(table.schema.fields.map((f) => `${f.name}:${f.type}:${[...f.metadata]}`)), String(toArrow(tree).schema.fields.map((f) => `${f.name}:${f.type}:${[...f.metadata]}`)));
      for (const d of Object.values(dev).flat()) d.dispose();
    });
  }

  it("getArrowIPC bytes are a stream pyarrow reads as rows", async () => {
    const tree = { obs: randomArray("float32", [3, 2]), done: array([true, false, true], "bool"), c: randomArray("complex64", [3]) };
    const dev = (await putArrow(jb(), toArrow(tree))) as Record<string, DeviceArray>;
    const path = join(dir, "fetched.arrows");
    writeFileSync(path, await getArrowIPC(jb(), dev));
    const res = await runPython<{ rows: number; problems: string[] }>(ORACLE_READ, { path, format: "stream", columns: specs(tree) });
    assert.deepEqual(res.problems, []);
    const rows = await runPython<unknown[]>(
      `import json, sys, pyarrow as pa\nprint(json.dumps(pa.ipc.open_stream(pa.OSFile(json.load(sys.stdin))).read_all().select(["['done']"]).to_pylist()))`,
      path,
    );
    assert.deepEqual(rows, [{ "['done']": true }, { "['done']": false }, { "['done']": true }]);
    for (const d of Object.values(dev)) d.dispose();
  });

  it("puts IPC bytes as they are (file format too) and rebuilds into `like`", async () => {
    const tree = { a: randomArray("int16", [4, 2]), meta: "static" };
    const bytes = toIPC(tree, "file");
    const dev = (await putArrow(jb(), bytes, { like: tree })) as { a: DeviceArray; meta: string };
    assert.equal(dev.meta, "static");
    assert.equal(b64(await dev.a.toHost()), b64(tree.a));
    dev.a.dispose();
  });

  it("sidecar errors name the column and the session keeps working; nothing leaks", async () => {
    const before = (await jb().stats()).handles;
    await assert.rejects(putArrow(jb(), new Uint8Array(randomBytes(64))), (e: unknown) => e instanceof SidecarError && e.remoteType === "ProtocolError" && /Arrow IPC/.test(e.message));
    const utf8 = tableToIPC(new Table({ "['s']": vectorFromArray(["a", "b"]) }), "stream");
    await assert.rejects(putArrow(jb(), utf8), (e: unknown) => e instanceof SidecarError && e.remoteType === "DTypeError" && e.message.includes(`"['s']"`));
    // A Table is checked before it is sent.
    await assert.rejects(putArrow(jb(), new Table({ "['s']": vectorFromArray(["a", "b"]) })), (e: unknown) => e instanceof BridgeInputError && /column "\['s'\]"/.test(e.message));
    // Handles of a reply that cannot be rebuilt are freed.
    await assert.rejects(putArrow(jb(), toIPC({ a: randomArray("float32", [2]) }), { like: { b: randomArray("float32", [2]) } }), /does not match the template/);
    await jb().ping();
    assert.equal((await jb().stats()).handles, before);
  });

  it("getArrow refuses unequal leading axes and host arrays before sending", async () => {
    const dev = (await putArrow(jb(), toArrow({ a: randomArray("float32", [3]) }))) as { a: DeviceArray };
    const other = (await putArrow(jb(), toArrow({ b: randomArray("float32", [4]) }))) as { b: DeviceArray };
    await assert.rejects(getArrow(jb(), { a: dev.a, b: other.b }), (e: unknown) => e instanceof BridgeInputError && e.message.includes("['a'] has 3") && e.message.includes("['b'] has 4"));
    await assert.rejects(getArrow(jb(), { a: dev.a, h: randomArray("float32", [3]) }), /is a host NDArray/);
    assert.throws(() => toArrow({ a: dev.a }), /is a DeviceArray/);
    dev.a.dispose();
    other.b.dispose();
    await assert.rejects(getArrow(jb(), { a: dev.a }), /was disposed/);
  });
});
