/**
 * docs/protocol.md is the authority for the wire, so it is compared with
 * the code on both sides, not with a list kept for the purpose: its op
 * table with the TypeScript op table (src/wire/ops.ts, whose runtime list
 * the compiler keeps exhaustive) and with the dispatch table of a real
 * sidecar (`python -m jaxbridge_sidecar ops`); its version and ext codes
 * with both codecs; its table of the sidecar's own error kinds and of the
 * default allow-list with what `ops` prints (python/tests/test_documented_tables.py
 * holds those to the sidecar's sources and behaviour), and the README's
 * sentence on the default allow-list with the same.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { EXT_ARRAY, EXT_HANDLE, EXT_MODULE, EXT_PYREF, PROTOCOL_VERSION } from "../../src/wire/protocol.js";
import { OPS } from "../../src/wire/ops.js";
import { sidecarPython } from "../../src/wire/python-env.js";
import { layoutFromWire, NamedSharding, type WireLayout } from "../../src/values/sharding.js";
import { runPython } from "../support/python.js";

interface SidecarOps {
  protocol: number;
  ops: { name: string; family: string }[];
  /** The sidecar's own error kinds (protocol.ERROR_KINDS). */
  errors: string[];
  /** The default allow-list, by the rows docs/protocol.md tables (allowlist.documented_defaults). */
  allow: Record<string, string[]>;
}

/** The rows of the markdown table whose header row is `| <first> | ... |`: each row's cells. */
function tableRows(doc: string, first: string): string[][] {
  const lines = doc.split("\n");
  const start = lines.findIndex((l) => l.startsWith(`| ${first} |`));
  assert.ok(start >= 0, `docs/protocol.md has no table headed "${first}"`);
  const rows: string[][] = [];
  for (const l of lines.slice(start + 2)) {
    if (!l.startsWith("|")) break;
    rows.push(l.split("|").slice(1, -1).map((c) => c.trim()));
  }
  return rows;
}

const ticked = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

/** What `python -m jaxbridge_sidecar ops` prints: the serving dispatch table (no benchmark ops: JAXBRIDGE_BENCH_OPS unset). */
function sidecarOps(): SidecarOps {
  const env = { ...process.env };
  delete env.JAXBRIDGE_BENCH_OPS;
  const r = spawnSync(sidecarPython(), ["-m", "jaxbridge_sidecar", "ops"], { env, encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, `python -m jaxbridge_sidecar ops failed:\n${r.stderr}`);
  return JSON.parse(r.stdout) as SidecarOps;
}

describe("docs/protocol.md is the authority", function () {
  this.timeout(180_000);
  const doc = readFileSync(new URL("../../docs/protocol.md", import.meta.url), "utf8");
  /** The op table's rows: op and family. */
  const documented = [...doc.matchAll(/^\| `(\w+)` \| (\w+) \|/gm)].map((m) => ({ name: m[1]!, family: m[2]! }));
  let sidecar: SidecarOps;
  before(() => {
    sidecar = sidecarOps();
  });

  it("names the version both sides speak", () => {
    const docVersion = Number(/^Protocol version: (\d+)$/m.exec(doc)?.[1]);
    assert.equal(docVersion, PROTOCOL_VERSION);
    assert.equal(sidecar.protocol, PROTOCOL_VERSION);
  });

  it("documents exactly the ops of the TypeScript op table, in its order", () => {
    assert.deepEqual(documented.map((o) => o.name), [...OPS]);
  });

  it("documents exactly the ops the sidecar dispatches, each in its family", () => {
    const names = sidecar.ops.map((o) => o.name);
    assert.deepEqual(names, [...names].sort(), "the sidecar lists its ops sorted by name");
    const byName = (xs: { name: string; family: string }[]) => [...xs].sort((a, b) => (a.name < b.name ? -1 : 1));
    assert.deepEqual(byName(documented), byName(sidecar.ops));
  });

  it("documents the ext codes both codecs use", async () => {
    const exts = [...doc.matchAll(/^\| (\d+) \| (\w+) \|/gm)].map((m) => [Number(m[1]), m[2]]);
    assert.deepEqual(exts, [
      [EXT_ARRAY, "array"],
      [EXT_HANDLE, "handle"],
      [EXT_PYREF, "pyref"],
      [EXT_MODULE, "module"],
    ]);
    const py = await runPython<number[]>("import json; from jaxbridge_sidecar import protocol as p; print(json.dumps([p.EXT_ARRAY, p.EXT_HANDLE, p.EXT_PYREF, p.EXT_MODULE]))");
    assert.deepEqual(py, [EXT_ARRAY, EXT_HANDLE, EXT_PYREF, EXT_MODULE]);
  });

  it("shows a layout that both codecs read and that a sidecar reports for that placement", async () => {
    const block = /### Shardings[\s\S]*?```json\n([\s\S]*?)```/.exec(doc)?.[1];
    assert.ok(block, "docs/protocol.md has a json block under Shardings");
    const example = JSON.parse(block) as WireLayout;
    const { sharding, shards } = layoutFromWire(example);
    assert.ok(sharding instanceof NamedSharding);
    assert.deepEqual(sharding.toWire(), { mesh: example.mesh, spec: example.spec });
    // The TypeScript rule for shard indices and replica ids gives the documented shards.
    assert.deepEqual(sharding.shards([4, 6]).map((s) => [s.device, s.index, s.replicaId]), shards.map((s) => [s.device, s.index, s.replicaId]));
    const py = await runPython<{ same: boolean; layout: unknown }>(
      `
import json, sys, jax
jax.config.update("jax_num_cpu_devices", 4)
import numpy as np
from jaxbridge_sidecar.handles import describe
from jaxbridge_sidecar.sharding import sharding_from_wire, sharding_to_wire
w = json.load(sys.stdin)
s = sharding_from_wire({"mesh": w["mesh"], "spec": w["spec"]}, "doc")
x = jax.device_put(np.zeros((4, 6), np.float32), s)
print(json.dumps({"same": sharding_to_wire(s) == {"mesh": w["mesh"], "spec": w["spec"]}, "layout": describe(1, x).layout}))
`,
      example,
    );
    assert.ok(py.same);
    assert.deepEqual(py.layout, example);
  });

  it("tables exactly the error kinds the sidecar sends", () => {
    const documented = tableRows(doc, "error").map((r) => ticked(r[0]!)[0]);
    assert.deepEqual(documented, sidecar.errors);
  });

  it("tables the default allow-list the sidecar enforces, row by row", () => {
    const rows = tableRows(doc, "default allow-list");
    assert.deepEqual(
      rows.map((r) => r[0]),
      Object.keys(sidecar.allow),
    );
    for (const [label, cell] of rows) assert.deepEqual([...ticked(cell!)].sort(), [...sidecar.allow[label!]!].sort(), `the "${label}" row`);
  });

  it("the README names the default namespaces the sidecar allows", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8").replace(/\s+/g, " ");
    const sentence = /by default the namespaces ([^;]*);/.exec(readme);
    const namespaces = sidecar.allow.namespaces;
    if (!namespaces) {
      assert.equal(sentence, null, "the README speaks of default namespaces, but the sidecar's allow-list has none");
      return;
    }
    assert.ok(sentence, "the README should name the default namespaces (\"by default the namespaces ...;\")");
    assert.deepEqual(ticked(sentence[1]!).sort(), [...namespaces].sort());
  });
});
