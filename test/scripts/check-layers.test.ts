/**
 * scripts/check-layers.mjs on small made-up trees: it must catch an import
 * up a layer, one sideways between layers that sit beside each other, a
 * run-time cycle, and zeromq outside the wire; and it must pass the real
 * src/ (npm test runs it too, this says so in the mocha suite's words).
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
// @ts-expect-error: a plain .mjs script without type declarations
import { checkLayers, layerOf } from "../../scripts/check-layers.mjs";

type Check = { files: string[]; problems: string[] };

function tree(files: Record<string, string>): { root: string; check(): Check } {
  const root = mkdtempSync(join(tmpdir(), "jaxbridge-layers-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return { root, check: () => checkLayers(root) as Check };
}

describe("scripts/check-layers.mjs", () => {
  const made: string[] = [];
  after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const run = (files: Record<string, string>): Check => {
    const t = tree(files);
    made.push(t.root);
    return t.check();
  };

  it("names each file's layer by its folder", () => {
    assert.equal(layerOf("src/index.ts"), "api");
    assert.equal(layerOf("src/trace/core.ts"), "trace");
    assert.equal(layerOf("src/trace/lib/jnp.ts"), "trace/lib");
    assert.equal(layerOf("src/values/tree.ts"), "values");
  });

  it("passes imports that run downward, type-only or not", () => {
    const r = run({
      "src/values/a.ts": "export const a = 1;\n",
      "src/session/s.ts": 'import { a } from "../values/a.js";\nexport const s = a;\n',
      "src/trace/t.ts": 'import type { s } from "../session/s.js";\nimport {\n  a,\n} from "../values/a.js";\nexport const t = a;\n',
    });
    assert.deepEqual(r.problems, []);
    assert.equal(r.files.length, 3);
  });

  it("fails an import up a layer, naming the file, the line and both layers", () => {
    const r = run({
      "src/session/s.ts": "export const s = 1;\n",
      "src/values/v.ts": '// a comment line\nimport type { s } from "../session/s.js";\n',
    });
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0]!, /^src\/values\/v\.ts:2: imports src\/session\/s\.ts: session is above values$/);
  });

  it("lets src/ import the one declared shared script, as its layer, and holds that script to Node's built-ins", () => {
    const ok = run({
      "scripts/lib/env-cache.mjs": 'import { join } from "node:path";\nexport const e = join;\n',
      "src/wire/p.ts": 'import { e } from "../../scripts/lib/env-cache.mjs";\nexport const p = e;\n',
    });
    assert.deepEqual(ok.problems, []);
    const up = run({
      "scripts/lib/env-cache.mjs": 'import x from "zeromq";\nexport const e = x;\n',
      "src/values/v.ts": 'import { e } from "../../scripts/lib/env-cache.mjs";\nexport const v = e;\n',
    });
    assert.equal(up.problems.length, 2);
    assert.match(up.problems.join("\n"), /^scripts\/lib\/env-cache\.mjs:1: imports zeromq; a file src\/ shares with the scripts may import Node's built-ins only$/m);
    assert.match(up.problems.join("\n"), /^src\/values\/v\.ts:1: imports scripts\/lib\/env-cache\.mjs: wire is above values$/m);
    const other = run({ "scripts/other.mjs": "export const o = 1;\n", "src/wire/p.ts": 'import { o } from "../../scripts/other.mjs";\nexport const p = o;\n' });
    assert.match(other.problems.join("\n"), /imports \.\.\/\.\.\/scripts\/other\.mjs, which is not a file under src\//);
  });

  it("fails an import between layers that sit beside each other (trace and io)", () => {
    const r = run({ "src/io/f.ts": "export const f = 1;\n", "src/trace/t.ts": 'export { f } from "../io/f.js";\n' });
    assert.match(r.problems.join("\n"), /src\/trace\/t\.ts:1: imports src\/io\/f\.ts: trace and io sit beside each other/);
  });

  it("fails a run-time cycle inside one layer, but not one made of type imports", () => {
    const cyclic = run({
      "src/values/a.ts": 'import { b } from "./b.js";\nexport const a = () => b;\n',
      "src/values/b.ts": 'import { a } from "./a.js";\nexport const b = () => a;\n',
    });
    assert.deepEqual(cyclic.problems, ["import cycle: src/values/a.ts → src/values/b.ts → src/values/a.ts (run-time imports; break it by moving what both need below them)"]);
    const typesOnly = run({
      "src/values/a.ts": 'import type { B } from "./b.js";\nexport interface A { b?: B }\n',
      "src/values/b.ts": 'import { type A } from "./a.js";\nexport interface B { a?: A }\n',
    });
    assert.deepEqual(typesOnly.problems, []);
  });

  it("fails zeromq or msgpackr imported outside src/wire/", () => {
    const r = run({
      "src/wire/t.ts": 'import { Dealer } from "zeromq";\nexport { Dealer };\n',
      "src/cli/doctor.ts": 'import { version } from "zeromq";\nexport { version };\n',
      "src/session/s.ts": 'import { pack } from "msgpackr";\nexport { pack };\n',
    });
    assert.deepEqual(r.problems.sort(), ["src/cli/doctor.ts:1: imports zeromq, which only wire may import", "src/session/s.ts:1: imports msgpackr, which only wire may import"]);
  });

  it("finds no problem in this repository's src/", () => {
    const r = checkLayers() as Check;
    assert.deepEqual(r.problems, []);
    assert.ok(r.files.length > 40);
  });
});
