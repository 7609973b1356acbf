import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { PROTOCOL_VERSION, EXT_ARRAY, EXT_HANDLE, EXT_PYREF, EXT_MODULE } from "../../src/wire/protocol.js";
import { OPS } from "../../src/wire/ops.js";
import { runPython } from "../support/python.js";

describe("docs/protocol.md is the authority", () => {
  const doc = readFileSync(new URL("../../docs/protocol.md", import.meta.url), "utf8");

  it("names the version both sides speak", async () => {
    const docVersion = Number(/^Protocol version: (\d+)$/m.exec(doc)?.[1]);
    assert.equal(docVersion, PROTOCOL_VERSION);
    const py = await runPython<{ v: number; ops: string[]; ext: number[] }>(
      "import json; from jaxbridge_sidecar import protocol as p; print(json.dumps({'v': p.PROTOCOL_VERSION, 'ops': list(p.OPS), 'ext': [p.EXT_ARRAY, p.EXT_HANDLE, p.EXT_PYREF, p.EXT_MODULE]}))",
    );
    assert.equal(py.v, PROTOCOL_VERSION);
    assert.deepEqual([...py.ops].sort(), [...OPS].sort());
    assert.deepEqual(py.ext, [EXT_ARRAY, EXT_HANDLE, EXT_PYREF, EXT_MODULE]);
  });

  it("documents exactly the ops and ext codes the code implements", () => {
    const documented = [...doc.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1]).sort();
    assert.deepEqual(documented, [...OPS].sort());
    const exts = [...doc.matchAll(/^\| (\d+) \| (\w+) \|/gm)].map((m) => [Number(m[1]), m[2]]);
    assert.deepEqual(exts, [
      [EXT_ARRAY, "array"],
      [EXT_HANDLE, "handle"],
      [EXT_PYREF, "pyref"],
      [EXT_MODULE, "module"],
    ]);
  });
});
