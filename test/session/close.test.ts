/**
 * `close()` settles whatever the sidecar is doing, and the program then
 * exits on its own. Each case runs in its own Node process
 * (support/close-case.ts), because the failure this guards against is the
 * process itself ending early: Node exits with code 13 when nothing keeps
 * its event loop alive while a top-level `await jb.close()` is unsettled.
 * Once the sidecar is up, the machine is loaded with one busy loop per
 * core, so a sidecar that is slow to die is the normal case here. No
 * timings are asserted: the mocha timeout is the bound.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..", "..");
const CASE = join(ROOT, "test", "session", "support", "close-case.ts");

/**
 * Load every core with a busy loop. Each loop ends by itself after
 * `seconds`, so that none outlives a test run that was killed.
 */
function loadCpu(seconds: number): ChildProcess[] {
  const code = `const end = Date.now() + ${seconds * 1000}; while (Date.now() < end) {}`;
  return Array.from({ length: availableParallelism() }, () => spawn(process.execPath, ["-e", code], { stdio: "ignore" }));
}

/**
 * Run one case. The CPU is loaded from the moment its sidecar is ready
 * (the case prints its pid) until the case exits: the close happens under
 * load, the JAX import before it does not have to.
 */
function runCase(which: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ["--import", "tsx", CASE, which], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, JAXBRIDGE_URL: "" } });
    let out = "";
    let burners: ChildProcess[] = [];
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (burners.length === 0 && /^sidecar \d+$/m.test(out)) burners = loadCpu(90);
    });
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.once("error", rej);
    child.once("close", (code, signal) => {
      for (const b of burners) b.kill("SIGKILL");
      res({ code, signal, out });
    });
  });
}

/** The sidecar's pid from the case's first line: it must be gone once the case has exited. */
function sidecarGone(out: string): boolean {
  const pid = Number(/^sidecar (\d+)$/m.exec(out)?.[1]);
  assert.ok(pid > 0, `no sidecar pid in:\n${out}`);
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

describe("Session.close() under CPU load", function () {
  this.timeout(120_000);
  const cases: [string, string, string | null][] = [
    ["busy", "a long scan running (not awaited), closed 1.5 s later", "SessionClosedError"],
    ["stopped", "the sidecar SIGSTOPped with a call pending", "SessionClosedError"],
    ["dead", "the sidecar already SIGKILLed", null],
    ["twice", "closed twice at once, then once more, with a long scan running", "SessionClosedError"],
  ];
  for (const [which, what, pendingError] of cases) {
    it(`${what}: close() settles and the process exits 0 on its own`, async () => {
      const r = await runCase(which);
      assert.equal(r.code, 0, `exit ${r.code ?? r.signal} (13 is an unsettled top-level await):\n${r.out}`);
      assert.match(r.out, /^closed in \d+ ms$/m, r.out);
      if (pendingError) assert.match(r.out, new RegExp(`^pending: ${pendingError}$`, "m"), "the call in flight rejected");
      assert.ok(sidecarGone(r.out), "the sidecar process is gone");
    });
  }
});
