/**
 * `npm run bench`: every figure is a ratio measured in this one run, against
 * a bare ZeroMQ echo between the same two processes (the sidecar hosts an
 * echo socket for this), and against pythonia, the bridge a user would pick
 * otherwise. Sections register themselves in bench/sections/.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "../src/index.js";
import { sidecarPython } from "../src/internal.js";
import { wireSection } from "./sections/wire.js";
import { pythoniaSection } from "./sections/pythonia.js";
import { traceSection } from "./sections/trace.js";
import { callbacksSection } from "./sections/callbacks.js";
import { pycallSection } from "./sections/pycall.js";
import { eagerSection } from "./sections/eager.js";
import { shardSection } from "./sections/shard.js";
import { clusterSection } from "./sections/cluster.js";
import { trainingSection } from "./sections/training.js";

export interface Row {
  name: string;
  value: string;
  ratio?: string;
  goal?: string;
  /** The verdict against the goal, where the section decides one. */
  pass?: boolean;
}

const only = process.argv.slice(2);
const echoUrl = `ipc://${join(mkdtempSync(join(tmpdir(), "jaxbridge-bench-")), "echo.sock")}`;
const jb = await connect({ args: ["--bench-echo", echoUrl] });
console.log(`jaxbridge bench: JAX ${jb.info.jax} on ${jb.info.backend}, Python ${jb.info.python}, Node ${process.version}`);
const rows: Row[] = [];
const ctx = { jb, echoUrl, python: sidecarPython(), rows };
try {
  const sections: Array<[string, (c: typeof ctx) => Promise<void>]> = [
    ["wire", wireSection],
    ["pythonia", pythoniaSection],
    ["trace", traceSection],
    ["callbacks", callbacksSection],
    ["pycall", pycallSection],
    ["eager", eagerSection],
    ["shard", shardSection],
    ["cluster", clusterSection],
    ["training", trainingSection],
  ];
  for (const [name, run] of sections) {
    if (only.length && !only.includes(name)) continue;
    console.log(`\n## ${name}`);
    const from = rows.length;
    await run(ctx);
    const w = Math.max(...rows.slice(from).map((r) => r.name.length));
    for (const r of rows.slice(from)) {
      const verdict = r.pass === undefined ? "" : r.pass ? "  PASS" : "  FAIL";
      console.log(`${r.name.padEnd(w)}  ${r.value.padStart(12)}  ${(r.ratio ?? "").padStart(10)}  ${r.goal ? `goal ${r.goal}` : ""}${verdict}`);
    }
  }
} finally {
  await jb.close();
}
