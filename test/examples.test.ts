/**
 * The examples run as a user runs them (`node --import tsx examples/...`),
 * each on its own embedded sidecar. The RL rollout's numbers are checked
 * against the same rollout written in Python with lerax.utils.filter_scan
 * (test/trace/support/rl_rollout.py): same seed, same initial parameters,
 * same operations in the same order, so every number must be equal. The DQN
 * (dqn-cartpole.ts) is checked the same way against test/examples/
 * dqn_cartpole.py, written with equinox and optax.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { sidecarPython } from "../src/wire/python-env.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

function run(cmd: string, args: string[], env: Record<string, string> = {}, input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    if (input !== undefined) child.stdin!.end(input);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

interface Report {
  iterations: { critic: number[]; target: number[]; value: number[]; action: number[]; done: boolean[] }[];
  state: number[];
  episodes: number;
  longest: number;
}

interface DqnReport {
  history: number[];
  solvedChunk: number | null;
  losses: (number | null)[];
  leaves: string[];
}

describe("examples", function () {
  this.timeout(300_000);

  it("quickstart.ts runs and prints what it computed", async () => {
    const r = await run(process.execPath, ["--import", "tsx", "examples/quickstart.ts"], { JAXBRIDGE_URL: "" });
    assert.equal(r.code, 0, `the quickstart exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^jaxbridge: JAX [\d.]+ on \w+/);
    assert.match(r.stdout, /x @ w = array\(\[\[ 4\.5, -0\.5\],/);
  });

  it("rl-rollout.ts runs, prints its summary, and its numbers equal the same rollout in Python with lerax", async () => {
    const [ts, py] = await Promise.all([
      run(process.execPath, ["--import", "tsx", "examples/rl-rollout.ts", "--json"], { JAXBRIDGE_URL: "" }),
      run(sidecarPython(), [join("test", "trace", "support", "rl_rollout.py")], { JAX_PLATFORMS: "cpu" }),
    ]);
    assert.equal(ts.code, 0, `the example exited ${ts.code}:\n${ts.stdout}\n${ts.stderr}`);
    assert.equal(py.code, 0, `the Python rollout exited ${py.code}:\n${py.stderr}`);
    const lines = ts.stdout.trim().split("\n");
    assert.match(lines[0]!, /^rl-rollout: cart-pole with an MLP policy and a TD\(0\) critic, 3 iterations x 250 steps, on \w+ \(JAX [\d.]+\)$/);
    for (const it of [1, 2, 3]) {
      assert.ok(
        lines.some((l) => new RegExp(`^iteration ${it}: \\d+ episodes ended, mean length [\\d.]+, mean \\|td\\| [\\d.]+, critic \\|w\\| [\\d.]+ \\(target [\\d.]+\\)$`).test(l)),
        `no summary line for iteration ${it}:\n${ts.stdout}`,
      );
    }
    assert.ok(lines.some((l) => /^total: \d+ episodes ended, longest \d+ steps$/.test(l)));
    // One trace and one program for three iterations: the later calls hit the cache and send only the hash.
    assert.ok(lines.some((l) => /^filterScan traced 1 time\(s\) for 3 calls, sent the program 1 time\(s\)/.test(l)), ts.stdout);

    const ours = JSON.parse(lines[lines.length - 1]!) as Report;
    const theirs = JSON.parse(py.stdout.trim().split("\n").pop()!) as Report;
    assert.ok(ours.episodes > 0, "some episodes ended (the cond reset the environment)");
    assert.equal(ours.episodes, theirs.episodes);
    assert.equal(ours.longest, theirs.longest);
    assert.deepEqual(ours.state, theirs.state);
    assert.equal(ours.iterations.length, 3);
    ours.iterations.forEach((o, i) => {
      const t = theirs.iterations[i]!;
      for (const k of ["critic", "target", "value", "action", "done"] as const) {
        assert.deepEqual(o[k], t[k], `iteration ${i + 1}: ${k} differs from the Python rollout`);
      }
      assert.notDeepEqual(o.critic, o.target, "the target critic lags the online one");
    });
  });

  it("dqn-cartpole.ts (reduced budget, 3 chunks): solves seed 0, and every loss, the evaluations, the network, target and Adam state equal the same DQN in Python with equinox and optax", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jaxbridge-dqn-"));
    try {
      const ts = await run(process.execPath, ["--import", "tsx", "examples/dqn-cartpole.ts", "--chunks", "3", "--json", "--dir", dir], { JAXBRIDGE_URL: "" });
      assert.equal(ts.code, 0, `the example exited ${ts.code}:\n${ts.stdout}\n${ts.stderr}`);
      const lines = ts.stdout.trim().split("\n");
      assert.match(lines[0]!, /^dqn-cartpole: DQN \(double, Huber, adam 0\.001, Polyak tau 0\.01\) on 4 CartPoles, seed 0, budget 3 chunks x 1000 env steps, on \w+ \(JAX [\d.]+\)$/);
      for (const c of [1, 2, 3]) {
        assert.ok(lines.some((l) => new RegExp(`^chunk ${c}: ${c}000 env steps, \\d+ training episodes ended \\(mean return [\\d.]+\\), evaluation mean return [\\d.]+ over 100 episodes$`).test(l)), ts.stdout);
      }
      assert.ok(lines.some((l) => /^solved at chunk 3: 3000 env steps, 500 updates, mean return [\d.]+ >= 195/.test(l)), ts.stdout);
      const checkpoint = join(dir, "checkpoint.eqx");
      assert.ok(lines.includes(`checkpoint ${checkpoint}: reloaded, 37 arrays; its evaluation is identical`), ts.stdout);
      const ours = JSON.parse(lines[lines.length - 1]!) as DqnReport;

      const py = await run(sidecarPython(), [join("test", "examples", "dqn_cartpole.py"), "--chunks", "3", "--checkpoint", checkpoint], { JAX_PLATFORMS: "cpu" });
      assert.equal(py.code, 0, `the Python DQN exited ${py.code}:\n${py.stderr}`);
      const theirs = JSON.parse(py.stdout.trim().split("\n").pop()!) as DqnReport & { checkpointEqual: boolean };
      assert.equal(ours.losses.length, 750);
      // Updates start at scan step 250: the first 100 updates' losses, then every one.
      assert.deepEqual(ours.losses.slice(250, 350), theirs.losses.slice(250, 350), "the first 100 updates");
      assert.deepEqual(ours.losses, theirs.losses);
      assert.equal(ours.losses.filter((l) => l !== null).length, 500);
      assert.deepEqual(ours.history, theirs.history);
      assert.equal(ours.solvedChunk, 3);
      assert.equal(theirs.solvedChunk, 3);
      assert.ok(ours.history[2]! >= 195);
      assert.equal(ours.leaves.length, 25, "Adam's count, mu and nu (13), the network (6) and the target (6)");
      ours.leaves.forEach((l, i) => assert.equal(l, theirs.leaves[i], `leaf ${i} of {optState, q, target} after 500 updates`));
      assert.ok(theirs.checkpointEqual, "equinox loads the TypeScript checkpoint into the Python run's final state, bit for bit");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("digits.ts: an MLP on scikit-learn's digits reaches >= 95 % test accuracy in seconds; scikit-learn's load_digits and numpy confirm the accuracy", async () => {
    const ts = await run(process.execPath, ["--import", "tsx", "examples/digits.ts", "--json"], { JAXBRIDGE_URL: "" });
    assert.equal(ts.code, 0, `the example exited ${ts.code}:\n${ts.stdout}\n${ts.stderr}`);
    const lines = ts.stdout.trim().split("\n");
    assert.match(lines[0]!, /^digits: MLP 64-128-10 on scikit-learn's digits \(1797 images; 1438 train, 359 test\), adam 0\.003, batch 64, on \w+ \(JAX [\d.]+\)$/);
    assert.ok(lines.some((l) => /^test accuracy [\d.]+% \(\d+\/359\) after 20 epochs x 22 steps in [\d.]+ s/.test(l)), ts.stdout);
    const ours = JSON.parse(lines[lines.length - 1]!) as { accuracy: number; correct: number; seconds: number; testIndices: number[]; params: { shape: number[]; b64: string }[] };
    assert.ok(ours.accuracy >= 0.95, `test accuracy ${ours.accuracy}`);
    assert.equal(new Set(ours.testIndices).size, 359);
    // The trained network, applied by numpy (float64) to the test images as load_digits gives them.
    // XLA computes the logits in float32: a prediction may flip only where two logits nearly tie.
    const py = await run(
      sidecarPython(),
      [
        "-c",
        `import json, sys, base64, numpy as np
from sklearn.datasets import load_digits
r = json.load(sys.stdin)
d = load_digits()
x = d.data[r["testIndices"]] / 16.0
p = [np.frombuffer(base64.b64decode(a["b64"]), np.float32).reshape(a["shape"]).astype(np.float64) for a in r["params"]]
h = np.maximum(x @ p[0].T + p[1], 0)
logits = h @ p[2].T + p[3]
print(json.dumps(int((logits.argmax(1) == d.target[r["testIndices"]]).sum())))`,
      ],
      { JAX_PLATFORMS: "cpu" },
      lines[lines.length - 1]!,
    );
    assert.equal(py.code, 0, py.stderr);
    const correct = JSON.parse(py.stdout.trim()) as number;
    assert.ok(Math.abs(correct - ours.correct) <= 1, `numpy counts ${correct} correct, the example ${ours.correct}`);
    assert.ok(correct / 359 >= 0.95, `numpy's accuracy ${correct / 359}`);
  });

  it("progress.ts trains with a per-step callback driving a progress bar, reports every step, and exits 0 on its own", async () => {
    const steps = 300;
    const ts = await run(process.execPath, ["--import", "tsx", "examples/progress.ts", String(steps)], { JAXBRIDGE_URL: "" });
    assert.equal(ts.code, 0, `the example exited ${ts.code}:\n${ts.stdout}\n${ts.stderr}`);
    const m = /^done: (\d+) steps reported, w=(-?[\d.]+) b=(-?[\d.]+) loss=([\d.]+)$/m.exec(ts.stdout);
    assert.ok(m, ts.stdout);
    assert.equal(Number(m[1]), steps, "the ordered callback saw every step");
    // The same gradient descent in numpy (float64): the example's float32 run lands within rounding of it.
    const code = [
      "import json, sys, numpy as np",
      "n = int(sys.argv[1]); xs = np.arange(64) / 32 - 1; y = 3 * xs - 2 + 0.01 * np.sin(np.arange(64) * 7)",
      "w = b = 0.0",
      "for _ in range(n):",
      "    err = w * xs + b - y; loss = np.mean(err * err)",
      "    w, b = w - 0.1 * 2 * np.mean(err * xs), b - 0.1 * 2 * np.mean(err)",
      "print(json.dumps([w, b, float(loss)]))",
    ].join("\n");
    const py = await run(sidecarPython(), ["-c", code, String(steps)]);
    assert.equal(py.code, 0, py.stderr);
    const [w, b, loss] = JSON.parse(py.stdout) as number[];
    assert.ok(Math.abs(Number(m[2]) - w!) < 2e-4 && Math.abs(Number(m[3]) - b!) < 2e-4, `w=${m[2]} b=${m[3]}, numpy: w=${w} b=${b}`);
    assert.ok(Math.abs(Number(m[4]) - loss!) < 1e-5, `loss ${m[4]}, numpy ${loss}`);
  });

  it("remote-mlp.ts: a remote equinox MLP in a traced scan, a Polyak target, saved, and reloaded in a fresh sidecar with the same outputs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jaxbridge-example-"));
    try {
      const ts = await run(process.execPath, ["--import", "tsx", "examples/remote-mlp.ts", "--json", "--dir", dir], { JAXBRIDGE_URL: "" });
      assert.equal(ts.code, 0, `the example exited ${ts.code}:\n${ts.stdout}\n${ts.stderr}`);
      const lines = ts.stdout.trim().split("\n");
      assert.match(lines[0]!, /^remote-mlp: two equinox MLPs .* on \w+ \(JAX [\d.]+\)$/);
      assert.ok(lines.includes(`saved ${join(dir, "online.eqx")} and ${join(dir, "target.eqx")}`), ts.stdout);
      assert.ok(lines.some((l) => /^fresh sidecar: loaded both files; outputs on 3 probes are identical$/.test(l)), ts.stdout);
      const report = lines[lines.length - 1]!;
      const ours = JSON.parse(report) as { scanned: unknown; before: unknown; after: { online: number[][]; target: number[][] } };

      // equinox and lerax in Python, from the same keys: the scan, the files, and the reloaded networks.
      const py = await run(sidecarPython(), [join("test", "trace", "support", "remote_mlp.py")], { JAX_PLATFORMS: "cpu" }, report);
      assert.equal(py.code, 0, `the Python oracle exited ${py.code}:\n${py.stderr}`);
      const theirs = JSON.parse(py.stdout.trim().split("\n").pop()!) as { scanned: unknown; loaded: unknown; fingerprints: boolean[]; leaves_equal: boolean[] };
      assert.deepEqual(ours.scanned, theirs.scanned, "the traced scan's outputs equal lerax.utils.filter_scan's");
      assert.deepEqual(theirs.fingerprints, [true, true], "each file starts with lerax's fingerprint");
      assert.deepEqual(theirs.leaves_equal, [true, true], "equinox loads each file into exactly the networks Python computed");
      assert.deepEqual(ours.after, theirs.loaded);
      assert.deepEqual(ours.before, ours.after);
      assert.notDeepEqual(ours.after.online, ours.after.target, "the target is not the online network");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("cluster.ts trains on 2 embedded processes x 2 CPU devices and recovers the weights the data were made from", async () => {
    const r = await run(process.execPath, ["--import", "tsx", "examples/cluster.ts"], { JAXBRIDGE_CLUSTER_URLS: "" });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines[0], "cluster: 2 processes, devices 0@p0, 1@p0, 2048@p1, 2049@p1");
    const losses = lines.filter((l) => l.startsWith("step ")).map((l) => Number(/loss (\S+)/.exec(l)![1]));
    assert.equal(losses.length, 4);
    assert.ok(losses.every((l, i) => i === 0 || l < losses[i - 1]!), `the loss falls: ${losses.join(", ")}`);
    assert.equal(lines[lines.length - 1], "w = [2.000, -3.000], b = 0.500");
  });
});
