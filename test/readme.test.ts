/**
 * The README's code runs, against the built package. Every ```ts and ```js
 * block in README.md is written to .jaxbridge/readme/ (git-ignored, inside
 * this package, so that `import ... from "jaxbridge"` resolves by
 * self-reference through package.json's `exports` to dist/, as it does in
 * a user's project; scripts/build-if-stale.mjs builds dist/ first when a
 * source is newer). Then:
 *
 * - all TypeScript blocks are type-checked together by one `tsc` (strict,
 *   module NodeNext), each error reported at its README line;
 * - every runnable block is imported, in README order, by one Node process
 *   (tsx for TypeScript) in a temporary working folder, and that process
 *   must exit with code 0 on its own: a block that leaves a session open,
 *   or a close() that does not settle, fails here.
 *
 * Two conventions, both visible to a README reader in the block's first line:
 *
 * - `// ... (type-checked only: WHY)`: the block is type-checked and not
 *   run, for code that needs what this machine lacks (a GPU host, a remote
 *   URL, keys made elsewhere).
 * - `// continues the block above`: the block is appended to the previous
 *   block's program, so a section can show one program in two steps; the
 *   two run as one.
 *
 * A block is otherwise a complete program: its imports, its connect() and
 * its close().
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");
const DIR = join(ROOT, ".jaxbridge", "readme");
const TYPECHECK_ONLY = /^\/\/.*\(type-checked only\b/;
const CONTINUES = /^\/\/ continues the block above\b/;

interface Block {
  /** README line of the block's first code line (1-based). */
  line: number;
  lang: "ts" | "js";
  code: string;
}

interface Program {
  name: string;
  lang: "ts" | "js";
  run: boolean;
  /** The blocks it is made of, each with the program line it starts at (1-based). */
  parts: { block: Block; at: number }[];
  code: string;
}

export function readmeBlocks(text: string): Block[] {
  const lines = text.split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(ts|typescript|js|javascript)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^```\s*$/.test(lines[end]!)) end++;
    assert.ok(end < lines.length, `README.md line ${i + 1}: the code block is not closed`);
    blocks.push({ line: start + 1, lang: open[1]!.startsWith("t") ? "ts" : "js", code: lines.slice(start, end).join("\n") });
    i = end;
  }
  return blocks;
}

function programs(blocks: Block[]): Program[] {
  const out: Program[] = [];
  for (const block of blocks) {
    const first = block.code.split("\n")[0]!;
    const prev = out[out.length - 1];
    if (CONTINUES.test(first)) {
      assert.ok(prev && prev.lang === block.lang, `README.md line ${block.line}: "continues the block above" needs a ${block.lang} block above it`);
      prev.parts.push({ block, at: prev.code.split("\n").length + 1 });
      prev.code += `\n${block.code}`;
      if (TYPECHECK_ONLY.test(first)) prev.run = false;
      continue;
    }
    out.push({ name: `block-${String(out.length + 1).padStart(2, "0")}-line-${block.line}`, lang: block.lang, run: !TYPECHECK_ONLY.test(first), parts: [{ block, at: 1 }], code: block.code });
  }
  return out;
}

/** The README line of a program's line. */
function readmeLine(p: Program, line: number): number {
  const part = [...p.parts].reverse().find((q) => q.at <= line)!;
  return part.block.line + (line - part.at);
}

describe("README.md: every TypeScript block type-checks and runs against the built package", function () {
  this.timeout(300_000);
  let progs: Program[] = [];

  before(function () {
    this.timeout(600_000);
    const build = spawnSync(process.execPath, [join(ROOT, "scripts", "build-if-stale.mjs")], { cwd: ROOT, encoding: "utf8" });
    assert.equal(build.status, 0, `building dist/ failed:\n${build.stdout}${build.stderr}`);
    progs = programs(readmeBlocks(readFileSync(join(ROOT, "README.md"), "utf8")));
    rmSync(DIR, { recursive: true, force: true });
    mkdirSync(DIR, { recursive: true });
    for (const p of progs) writeFileSync(join(DIR, `${p.name}.${p.lang === "ts" ? "ts" : "mjs"}`), `${p.code}\nexport {};\n`);
  });

  it("has blocks to test, and marks the ones it cannot run", () => {
    assert.ok(progs.filter((p) => p.lang === "ts").length >= 5, progs.map((p) => p.name).join(", "));
    assert.ok(progs.some((p) => !p.run), "the CURVE block for a GPU host is type-checked only");
    assert.ok(progs.filter((p) => p.run).length >= 4);
  });

  it("type-checks every TypeScript block (strict, NodeNext, the package's own .d.ts)", () => {
    const files = progs.filter((p) => p.lang === "ts").map((p) => `${p.name}.ts`);
    const tsconfig = {
      compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", lib: ["ES2023", "ESNext.Disposable"], types: ["node"], strict: true, noEmit: true, skipLibCheck: true },
      files,
    };
    writeFileSync(join(DIR, "tsconfig.json"), JSON.stringify(tsconfig, null, 2));
    const tsc = spawnSync(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", join(DIR, "tsconfig.json"), "--pretty", "false"], { cwd: DIR, encoding: "utf8" });
    const errors = (tsc.stdout + tsc.stderr)
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => {
        const m = /^(block-[\w-]+)\.ts\((\d+),(\d+)\): (.*)$/.exec(l);
        const p = m && progs.find((q) => q.name === m[1]);
        return p ? `README.md:${readmeLine(p, Number(m[2]))}:${m[3]}: ${m[4]}` : l;
      });
    assert.deepEqual(errors, []);
    assert.equal(tsc.status, 0);
  });

  it("runs every runnable block in one Node process, which then exits 0 on its own", async () => {
    const runnable = progs.filter((p) => p.run);
    const runner = [
      // tsx from this package's node_modules; the blocks' own imports resolve as a user's would.
      'import { register } from "tsx/esm/api";',
      "register();",
      "for (const file of process.argv.slice(2)) {",
      '  console.log(`readme: start ${file}`);',
      "  try {",
      '    await import(new URL(file, import.meta.url).href);',
      '    console.log(`readme: ok ${file}`);',
      "  } catch (e) {",
      '    console.log(`readme: FAILED ${file}: ${e?.stack ?? e}`);',
      "    process.exitCode = 1;",
      "  }",
      "}",
      'console.log("readme: all blocks ran");',
    ].join("\n");
    writeFileSync(join(DIR, "run.mjs"), `${runner}\n`);
    const cwd = mkdtempSync(join(tmpdir(), "jaxbridge-readme-"));
    try {
      const files = runnable.map((p) => `./${p.name}.${p.lang === "ts" ? "ts" : "mjs"}`);
      const env = { ...process.env };
      for (const k of ["JAXBRIDGE_URL", "JAXBRIDGE_CURVE_SERVER_KEY", "JAXBRIDGE_CURVE_CLIENT_KEY"]) delete env[k];
      const child = spawn(process.execPath, [join(DIR, "run.mjs"), ...files], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (out += d.toString()));
      // Once every block has run, the process has a bounded time to exit by itself.
      let lingered = false;
      const exited = new Promise<number | null>((res) => child.once("close", (code) => res(code)));
      const allRan = new Promise<void>((res) => child.stdout.on("data", () => out.includes("readme: all blocks ran") && res()));
      await Promise.race([allRan, exited]);
      const timer = setTimeout(() => {
        lingered = true;
        child.kill("SIGKILL");
      }, 30_000);
      const code = await exited;
      clearTimeout(timer);
      const failed = [...out.matchAll(/^readme: FAILED \.\/(block-\d+-line-(\d+))\.\w+: ([\s\S]*?)(?=^readme: |\s*$(?![\s\S]))/gm)].map((m) => `README.md block at line ${m[2]}: ${m[3]!.trim()}`);
      assert.deepEqual(failed, [], out);
      for (const f of files) assert.ok(out.includes(`readme: ok ${f}`), `${f} did not finish:\n${out}`);
      assert.ok(!lingered, `every block ran, but the process was still alive 30 s later: something holds Node's event loop (a session left open?)\n${out}`);
      assert.equal(code, 0, `exit ${code}:\n${out}`);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
