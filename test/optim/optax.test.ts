/**
 * The optimizers against optax itself: generated cases (every optimizer,
 * schedules, gradient clipping, float32/float64/mixed trees, generated
 * hyperparameters), each run for a few steps as one jitted step in
 * TypeScript and as one `jax.jit` step of optax in Python
 * (support/optax_oracle.py), compared bit for bit: every step's updates,
 * the final parameters and every leaf of the final optimizer state, in
 * optax's leaf order. Jitted against jitted on the CPU, with the same
 * operations in the same order, the bits are equal: no tolerance.
 */
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";
import { jit } from "../../src/trace/jit.js";
import { NDArray } from "../../src/values/ndarray.js";
import { DeviceArray } from "../../src/values/device-array.js";
import { treeLeaves } from "../../src/values/tree.js";
import { sidecarPython } from "../../src/wire/python-env.js";
import type { Session } from "../../src/session/session.js";
import * as optax from "../../src/optim/index.js";
import { useSession } from "../support/session.js";
import { fromWire, type WireArray } from "../trace/support/oracle.js";
import { buildOpt, buildTree, generateCases, type Case } from "./support/cases.js";

const HERE = dirname(fileURLToPath(import.meta.url));

interface PyResult {
  updates: WireArray[][];
  params: WireArray[];
  state: WireArray[];
  state_structure: string;
}

export function optaxOracle(cases: Case[], x64: boolean): Promise<PyResult[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(sidecarPython(), [join(HERE, "support", "optax_oracle.py")], {
      env: { ...process.env, ORACLE_X64: x64 ? "1" : "0", JAX_PLATFORMS: "cpu" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`the optax oracle exited ${code}:\n${err.slice(-4000)}`));
      resolve((JSON.parse(out.trim().split("\n").pop()!) as { results: PyResult[] }).results);
    });
    child.stdin.end(JSON.stringify({ x64, cases }));
  });
}

interface TsResult {
  updates: NDArray[][];
  params: NDArray[];
  state: NDArray[];
}

async function host(jb: Session, tree: unknown): Promise<NDArray[]> {
  return (treeLeaves(await jb.get(tree)) as NDArray[]).map((x) => x);
}

/** One case, as the user writes a training step: init at top level, then one jitted step per gradient. */
export async function runCase(jb: Session, c: Case): Promise<TsResult> {
  const opt = buildOpt(c.opt);
  let params = buildTree(c.params);
  let state = await opt.init(params);
  const step = jit((p: unknown, s: unknown, g: unknown) => {
    const [u, s2] = opt.update(g, s, p) as [unknown, unknown];
    return [optax.applyUpdates(p, u), s2, u] as const;
  });
  const updates: NDArray[][] = [];
  for (const g of c.grads) {
    const [p2, s2, u] = (await step(params, state, buildTree(g))) as [unknown, unknown, unknown];
    params = p2;
    state = s2;
    updates.push(await host(jb, u));
  }
  return { updates, params: await host(jb, params), state: await host(jb, state) };
}

function bits(a: NDArray): string {
  return Buffer.from(a.bytes()).toString("hex");
}

function sameArrays(what: string, ours: NDArray[], theirs: WireArray[]): string | null {
  if (ours.length !== theirs.length) return `${what}: ${ours.length} leaves here, ${theirs.length} in optax`;
  for (let i = 0; i < ours.length; i++) {
    const t = fromWire(theirs[i]!);
    const o = ours[i]!;
    if (o.dtype !== t.dtype || o.shape.join(",") !== t.shape.join(",")) return `${what} leaf ${i}: ${o.dtype}[${o.shape}] here, ${t.dtype}[${t.shape}] in optax`;
    if (bits(o) !== bits(t)) return `${what} leaf ${i} (${o.dtype}[${o.shape}]): ${JSON.stringify(Array.from(o.data as Float32Array).slice(0, 6))} here, ${JSON.stringify(Array.from(t.data as Float32Array).slice(0, 6))} in optax`;
  }
  return null;
}

export function compareCase(c: Case, ours: TsResult, theirs: PyResult): string | null {
  const d =
    ours.updates.map((u, k) => sameArrays(`step ${k + 1} updates`, u, theirs.updates[k]!)).find((x) => x !== null) ??
    sameArrays("final params", ours.params, theirs.params) ??
    sameArrays("final state", ours.state, theirs.state);
  return d === null ? null : `case ${c.seed} ${JSON.stringify(c.opt)}: ${d} (optax state ${theirs.state_structure})`;
}

for (const x64 of [true, false]) {
  describe(`optax: generated cases against optax 0.2.8 (x64 ${x64 ? "on" : "off"})`, function () {
    this.timeout(900_000);
    const session = useSession(x64 ? {} : { x64: false });
    const cases = generateCases(x64 ? 1 : 2, x64 ? 120 : 40, { x64 });

    it(`${cases.length} cases: every step's updates, the final parameters and the whole state have optax's bits`, async () => {
      const jb = session();
      const oracle = optaxOracle(cases, x64);
      const failures: string[] = [];
      const ours: TsResult[] = [];
      for (const c of cases) ours.push(await runCase(jb, c));
      const theirs = await oracle;
      cases.forEach((c, i) => {
        const d = compareCase(c, ours[i]!, theirs[i]!);
        if (d) failures.push(d);
      });
      assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases differ from optax:\n${failures.slice(0, 8).join("\n")}`);
    });
  });
}
