#!/usr/bin/env node
// The import-layer check (check-layers.mjs), then both suites: mocha
// (TypeScript, .mocharc.json) and pytest (Python, see pytest.mjs), each
// even if the one before failed. Arguments go to mocha
// (`npm test -- --grep arrow`). Ends with one line
//   total: N passed, N failed, N skipped
// and exits non-zero if any of them failed or did not run. A suite that
// fails without reporting a failing test (a crash, a load error) counts as
// one failure in that line.
import { onInterrupt } from "./lib/common.mjs";
import { runLayers, runMocha, runPytest } from "./lib/suites.mjs";

onInterrupt();

let lastChar = "\n";
for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream);
  stream.write = (chunk, ...rest) => {
    const s = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    if (s.length) lastChar = s[s.length - 1];
    return write(chunk, ...rest);
  };
}
function line(text) {
  if (lastChar !== "\n") process.stdout.write("\n");
  process.stdout.write(`${text}\n`);
}

line("jaxbridge test: import layers (scripts/check-layers.mjs)");
const layers = await runLayers();
line("jaxbridge test: TypeScript suite (mocha)");
const mocha = await runMocha(process.argv.slice(2));
line("jaxbridge test: Python suite (pytest)");
const pytest = await runPytest([]);

const total = { passed: 0, failed: 0, skipped: 0 };
line("");
for (const s of [layers, mocha, pytest]) {
  let failed = s.failed;
  let note = s.note;
  if (!s.ok && failed === 0) {
    failed = 1;
    const why = !s.ran ? "did not run" : s.code === null ? "could not start" : `exited with code ${s.code} without reporting a failing test`;
    note = [note, `${why}; counted as 1 failure`].filter(Boolean).join("; ");
  }
  total.passed += s.passed;
  total.failed += failed;
  total.skipped += s.skipped;
  line(`jaxbridge test: ${s.name}: ${s.ok ? "ok" : "FAILED"}: ${s.passed} passed, ${failed} failed, ${s.skipped} skipped${note ? ` (${note})` : ""}`);
}
line(`total: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
process.exit(layers.ok && mocha.ok && pytest.ok ? 0 : 1);
