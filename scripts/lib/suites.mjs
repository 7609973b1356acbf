// Running the two test suites and counting their results.
// Each runner streams the suite's own output and resolves to
//   {name, ran, ok, code, passed, failed, skipped, counted, note}
// where `ran` is false when the suite could not start, `ok` is the verdict
// and `counted` says whether the counts came from the suite itself.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readText, REPO_ROOT, run, show, stripAnsi, venvDir, venvPython } from "./common.mjs";

const COLOR = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
const MOCHA_REPORTER = join(REPO_ROOT, "scripts", "lib", "mocha-reporter.mjs");

function tmpFile(tag, ext) {
  return join(tmpdir(), `jaxbridge-${tag}-${process.pid}-${Date.now()}.${ext}`);
}

function mochaBin() {
  const dir = join(REPO_ROOT, "node_modules", "mocha");
  try {
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const bin = typeof pkg.bin === "string" ? pkg.bin : pkg.bin?.mocha ?? pkg.bin?._mocha;
    if (bin && existsSync(join(dir, bin))) return join(dir, bin);
  } catch {
    /* fall through */
  }
  return null;
}

/** Counts from the spec reporter's closing lines ("N passing", "N failing", "N pending"). */
function parseMochaText(output) {
  const text = stripAnsi(output);
  const num = (word) => {
    const all = [...text.matchAll(new RegExp(`^\\s*(\\d+) ${word}\\b`, "gm"))];
    return all.length ? Number(all[all.length - 1][1]) : null;
  };
  const passed = num("passing");
  const failed = num("failing");
  const skipped = num("pending");
  if (passed === null && failed === null && skipped === null) return null;
  return { passed: passed ?? 0, failed: failed ?? 0, skipped: skipped ?? 0 };
}

/**
 * The import rule (scripts/check-layers.mjs): each module of src/ counts as
 * one check, and each import that breaks the layers, each cycle and each
 * misplaced package import as one failure, listed before the counts.
 */
export async function runLayers() {
  const base = { name: "layers", passed: 0, failed: 0, skipped: 0, counted: true, note: "" };
  try {
    const { checkLayers, LAYER_ORDER } = await import("../check-layers.mjs");
    const { files, problems } = checkLayers(REPO_ROOT);
    for (const p of problems) process.stdout.write(`  ${p}\n`);
    const bad = new Set(problems.map((p) => /^(src\/[^:]+):/.exec(p)?.[1]).filter(Boolean));
    process.stdout.write(`  ${files.length} modules checked against ${LAYER_ORDER}\n`);
    return { ...base, ran: true, ok: problems.length === 0, code: problems.length ? 1 : 0, passed: files.length - bad.size, failed: problems.length };
  } catch (e) {
    return { ...base, ran: false, ok: false, code: null, counted: false, note: `the check could not run: ${e?.message ?? e}` };
  }
}

/**
 * The whole suite's files. Not in .mocharc.json, where mocha would add them
 * to any file named on the command line (`npx mocha test/x.test.ts` runs
 * that one file).
 */
export const MOCHA_SPEC = "test/**/*.test.ts";

/** Whether mocha arguments name test files of their own (else the whole suite runs). */
function namesFiles(args) {
  return args.some((a, i) => !a.startsWith("-") && /\.test\.ts$|[*]/.test(a) && !(i > 0 && /^(-g|--grep|-f|--fgrep|--reporter|-R)$/.test(args[i - 1])));
}

/** The TypeScript suite: mocha with .mocharc.json, plus `args` (the whole suite unless they name files). */
export async function runMocha(args = []) {
  const base = { name: "mocha", passed: 0, failed: 0, skipped: 0, counted: false, note: "" };
  const bin = mochaBin();
  if (!bin) return { ...base, ran: false, ok: false, code: null, note: "node_modules/mocha is missing: run `npm run setup`" };
  const ownReporter = args.some((a) => a === "-R" || a === "--reporter" || a.startsWith("--reporter="));
  const statsFile = tmpFile("mocha", "json");
  const full = [bin, ...(ownReporter ? [] : ["--reporter", MOCHA_REPORTER]), ...(COLOR ? ["--color"] : []), ...args, ...(namesFiles(args) ? [] : [MOCHA_SPEC])];
  const r = await run(process.execPath, full, { tee: true, env: { ...process.env, JAXBRIDGE_MOCHA_STATS: statsFile } });
  const statsText = readText(statsFile);
  rmSync(statsFile, { force: true });
  let counts = null;
  if (statsText) {
    try {
      const s = JSON.parse(statsText);
      counts = { passed: s.passes, failed: s.failures, skipped: s.pending };
    } catch {
      /* fall back to the text */
    }
  }
  counts ??= parseMochaText(r.output);
  if (!counts && r.code !== 0 && /No test files found/i.test(r.output)) {
    // Like pytest's exit code 5: an empty suite is not a failure.
    return { ...base, ran: true, ok: true, code: r.code, counted: true, note: "no test files found" };
  }
  const result = { ...base, ...(counts ?? {}), ran: r.code !== null, code: r.code, counted: Boolean(counts) };
  result.ok = r.code === 0 && result.failed === 0;
  if (r.signal) result.note = `killed by ${r.signal}`;
  return result;
}

/** Counts from pytest's JUnit XML: every <testsuite> element's attributes. */
function parseJunit(xml) {
  let found = false;
  const c = { passed: 0, failed: 0, skipped: 0 };
  for (const m of xml.matchAll(/<testsuite\b([^>]*)>/g)) {
    const attr = (k) => Number((new RegExp(`\\b${k}="(\\d+)"`).exec(m[1]) ?? [])[1] ?? 0);
    const tests = attr("tests");
    const failed = attr("failures") + attr("errors");
    const skipped = attr("skipped");
    c.failed += failed;
    c.skipped += skipped;
    c.passed += Math.max(0, tests - failed - skipped);
    found = true;
  }
  return found ? c : null;
}

/** Counts from pytest's closing line ("2 failed, 10 passed, 1 skipped in 3.2s"). */
function parsePytestText(output) {
  const lines = stripAnsi(output).trim().split(/\r?\n/).reverse();
  const line = lines.find((l) => /\b\d+ (passed|failed|skipped|errors?|xfailed|xpassed|deselected)\b.* in [\d.]+s/.test(l) || /no tests ran in/.test(l));
  if (!line) return null;
  const n = (word) => [...line.matchAll(new RegExp(`(\\d+) ${word}\\b`, "g"))].reduce((s, m) => s + Number(m[1]), 0);
  return { passed: n("passed") + n("xpassed"), failed: n("failed") + n("errors?"), skipped: n("skipped") + n("xfailed") };
}

/** The Python suite: `<venv>/bin/python -m pytest python/tests -q`, plus `args`. Exit code 5 (nothing collected) is a pass. */
export async function runPytest(args = [], { junit = true } = {}) {
  const base = { name: "pytest", passed: 0, failed: 0, skipped: 0, counted: false, note: "" };
  const py = venvPython(venvDir());
  if (!existsSync(py)) {
    return { ...base, ran: false, ok: false, code: null, note: `no Python environment at ${show(venvDir())}: run \`npm run setup -- --test\`` };
  }
  const junitFile = junit ? tmpFile("pytest", "xml") : null;
  const full = ["-m", "pytest", "python/tests", "-q", ...(COLOR ? ["--color=yes"] : []), ...(junitFile ? [`--junitxml=${junitFile}`] : []), ...args];
  const r = await run(py, full, { tee: true });
  const xml = junitFile ? readText(junitFile) : null;
  if (junitFile) rmSync(junitFile, { force: true });
  const counts = (xml && parseJunit(xml)) ?? parsePytestText(r.output);
  const result = { ...base, ...(counts ?? {}), ran: r.code !== null, code: r.code, counted: Boolean(counts) };
  if (r.code === 5) {
    result.ok = true;
    result.note = "no tests collected";
  } else {
    result.ok = r.code === 0 && result.failed === 0;
  }
  if (r.signal) result.note = `killed by ${r.signal}`;
  return result;
}
