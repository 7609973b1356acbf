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
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { jit, programStats } from "../../src/trace/jit.js";
import { NDArray } from "../../src/values/ndarray.js";
import { DeviceArray } from "../../src/values/device-array.js";
import { treeLeaves } from "../../src/values/tree.js";
import type { Session } from "../../src/session/session.js";
import * as optax from "../../src/optim/index.js";
import { Serializable } from "../../src/io/serializable.js";
import { runPython } from "../support/python.js";
import { useSession } from "../support/session.js";
import { fromWire, type WireArray } from "../trace/support/oracle.js";
import { buildLr, buildOpt, buildTree, generateCases, type Case } from "./support/cases.js";

const HERE = dirname(fileURLToPath(import.meta.url));

interface PyResult {
  updates: WireArray[][];
  params: WireArray[];
  state: WireArray[];
  state_structure: string;
}

/** Run support/<script> (a Python file reading JSON on stdin) in the sidecar's environment. */
export function pythonScript<T>(script: string, input: unknown, x64 = true): Promise<T> {
  const path = join(HERE, "support", script);
  const code = `import runpy, sys; sys.path.insert(0, ${JSON.stringify(join(HERE, "support"))}); sys.argv = [${JSON.stringify(path)}]; runpy.run_path(${JSON.stringify(path)}, run_name="__main__")`;
  return runPython<T>(code, input, { env: { ORACLE_X64: x64 ? "1" : "0", JAX_PLATFORMS: "cpu" } });
}

export async function optaxOracle(cases: Case[], x64: boolean, opts: { split?: boolean } = {}): Promise<PyResult[]> {
  return (await pythonScript<{ results: PyResult[] }>("optax_oracle.py", { x64, cases, split: opts.split ?? false }, x64)).results;
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

/** The same case with no jit of the user's: init, update and applyUpdates each called at top level on DeviceArrays. */
async function runCaseTopLevel(jb: Session, c: Case): Promise<TsResult> {
  const opt = buildOpt(c.opt);
  let params = await jb.put(buildTree(c.params));
  let state = await opt.init(params);
  const updates: NDArray[][] = [];
  for (const g of c.grads) {
    const [u, s2] = await opt.update(await jb.put(buildTree(g)), state, params);
    params = await optax.applyUpdates(params, u);
    state = s2;
    updates.push(await host(jb, u));
  }
  return { updates, params: await host(jb, params), state: await host(jb, state) };
}

describe("optax: at top level and in Serializable files", function () {
  this.timeout(600_000);
  const session = useSession();

  it("the generated cases cover every optimizer, every schedule and the gradient clip", () => {
    const json = JSON.stringify(generateCases(1, 120, { x64: true }));
    for (const name of ["sgd", "adam", "adamw", "rmsprop", "adagrad", "lion", "clip_by_global_norm", "chain"]) assert.ok(json.includes(`"name":"${name}"`), name);
    for (const s of ["constant_schedule", "linear_schedule", "polynomial_schedule", "cosine_decay_schedule", "exponential_decay", "warmup_constant_schedule", "warmup_cosine_decay_schedule", "join_schedules"]) {
      assert.ok(json.includes(`"schedule":"${s}"`), s);
    }
    for (const k of ['"nesterov":true', '"centered":true', '"bias_correction":true', '"eps_in_sqrt":false', '"mu_dtype"', '"accumulator_dtype"', '"staircase":true']) assert.ok(json.includes(k), k);
  });

  // Each top-level call is its own program, so XLA cannot fuse the update's last multiply into
  // applyUpdates' add (an FMA in a fused step): the oracle runs optax's functions jitted one by one too.
  it("init, update and applyUpdates called at top level on DeviceArrays give the bits of jax.jit(opt.update) and jax.jit(optax.apply_updates)", async () => {
    const jb = session();
    const cases = generateCases(3, 16, { x64: true });
    const oracle = optaxOracle(cases, true, { split: true });
    const ours: TsResult[] = [];
    for (const c of cases) ours.push(await runCaseTopLevel(jb, c));
    const theirs = await oracle;
    const failures = cases.map((c, i) => compareCase(c, ours[i]!, theirs[i]!)).filter((d) => d !== null);
    assert.deepEqual(failures, []);
  });

  it("a top-level update returns DeviceArrays, and a second call with the same signature traces nothing", async () => {
    const jb = session();
    const opt = optax.adam(1e-2);
    const params = await jb.put({ w: new NDArray(new Float32Array([1, 2, 3]), [3], "float32") });
    const state = await opt.init(params);
    const grads = { w: new NDArray(new Float32Array([0.5, -0.5, 1]), [3], "float32") };
    const [u1, s1] = await opt.update(grads, state, params);
    const [u2] = await opt.update(grads, s1, params);
    assert.ok((u1 as { w: unknown }).w instanceof DeviceArray);
    assert.ok((u2 as { w: unknown }).w instanceof DeviceArray);
    // Both calls had one signature: the second one's program came from the cache.
    const stats = await programStats(jb);
    const [, s3] = await opt.update(grads, s1, params);
    const after = await programStats(jb);
    assert.equal(after.traces, stats.traces, "no new JAX trace for a known signature");
    assert.ok(treeLeaves(s3).every((l) => l instanceof DeviceArray));
  });

  it("schedules at top level give optax's values at every step (await schedule(step))", async () => {
    const specs = generateCases(4, 60, { x64: true })
      .flatMap((c) => [c.opt, ...("parts" in c.opt ? c.opt.parts : [])])
      .flatMap((o) => ("lr" in o && typeof o.lr === "object" ? [o.lr] : []));
    assert.ok(specs.length >= 10, `${specs.length} schedules`);
    const steps = [0, 1, 2, 3, 5, 8, 13];
    const theirs = await runPython<number[][]>(
      `
import sys, json
sys.path.insert(0, ${JSON.stringify(join(HERE, "support"))})
from optax_oracle import schedule
import jax, jax.numpy as jnp
specs, steps = json.load(sys.stdin)
out = []
for s in specs:
    f = jax.jit(schedule(s))
    out.append([float(f(jnp.asarray(k, jnp.int32))) for k in steps])
print(json.dumps(out))
`,
      [specs, steps],
      { env: { JAX_PLATFORMS: "cpu", ORACLE_X64: "1" } },
    );
    for (const [i, spec] of specs.entries()) {
      const s = buildLr(spec) as optax.Schedule;
      const ours: number[] = [];
      for (const k of steps) ours.push(await s(k));
      assert.deepEqual(ours, theirs[i], `schedule ${JSON.stringify(spec)}`);
    }
  });

  it("a state saved with Serializable loads into optax's own state with equinox, and equinox's file loads back", async () => {
    const jb = session();
    const dir = await mkdtemp(join(tmpdir(), "jaxbridge-optax-"));
    try {
      const cases = generateCases(5, 40, { x64: true }).filter((c) => JSON.stringify(c.opt).match(/"(adam|adamw|rmsprop|lion)"/)).slice(0, 4);
      assert.equal(cases.length, 4);
      const runs: { c: Case; params0: unknown; state0: unknown; final: unknown[]; tsFile: string; pyFile: string }[] = [];
      for (const c of cases) {
        const opt = buildOpt(c.opt);
        const params0 = buildTree(c.params);
        const state0 = await opt.init(params0);
        let params = params0;
        let state = state0;
        const step = jit((p: unknown, s: unknown, g: unknown) => {
          const [u, s2] = opt.update(g, s, p) as [unknown, unknown];
          return [optax.applyUpdates(p, u), s2] as const;
        });
        for (const g of c.grads) [params, state] = (await step(params, state, buildTree(g))) as [unknown, unknown];
        const tsFile = await new Checkpoint(params, state).serialize(join(dir, `ts-${c.seed}`));
        runs.push({ c, params0, state0, final: [params, state], tsFile, pyFile: join(dir, `py-${c.seed}.eqx`) });
      }
      const py = await pythonScript<{ loaded_equal: boolean; leaves: number; structure: string }[]>(
        "optax_state_io.py",
        runs.map((r) => ({ case: r.c, ts_file: r.tsFile, py_file: r.pyFile })),
      );
      for (const [i, r] of runs.entries()) {
        assert.ok(py[i]!.loaded_equal, `case ${r.c.seed}: equinox loads our file into optax's state ${py[i]!.structure} with optax's bits`);
        assert.equal(py[i]!.leaves, treeLeaves(r.final).length);
        const back = await Checkpoint.deserialize(r.pyFile, r.params0, r.state0);
        const want = await host(jb, r.final);
        const got = treeLeaves([back.params, back.optState]) as NDArray[];
        assert.deepEqual(got.map(bits), want.map(bits), `case ${r.c.seed}: optax's file loads back into the TypeScript state`);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** A checkpoint as a training script keeps one: the parameters and the optimizer state. */
class Checkpoint extends Serializable {
  constructor(
    public params: unknown,
    public optState: unknown,
  ) {
    super();
  }
}

describe("optax: bad input gets an error that names it", function () {
  this.timeout(300_000);
  const session = useSession();
  const w = new NDArray(new Float32Array([1, 2]), [2], "float32");
  const b = new NDArray(new Float32Array([3]), [1], "float32");

  it("when the hyperparameters are wrong, at construction", () => {
    assert.throws(() => optax.adam(NaN), /optax\.scale_by_learning_rate: learningRate must be a finite number, got NaN/);
    assert.throws(() => optax.sgd("0.1" as never), /learningRate must be a finite number, got string/);
    assert.throws(() => optax.adam(1e-3, { b1: Infinity }), /optax\.scale_by_adam: b1 must be a finite number, got Infinity/);
    assert.throws(() => optax.cosineDecaySchedule({ initValue: 1, decaySteps: 0 }), /requires positive decaySteps, got decaySteps=0/);
    assert.throws(() => optax.linearSchedule({ initValue: 1, endValue: 0, transitionSteps: 2.5 }), /transitionSteps must be an integer, got 2\.5/);
    assert.throws(() => optax.chain(optax.sgd(0.1), 5 as never), /optax\.chain: argument 1 is 5, not a GradientTransformation/);
    assert.throws(() => optax.joinSchedules([optax.constantSchedule(1), optax.constantSchedule(2)], []), /2 schedules need 1 boundaries, got 0/);
  });

  it("when gradients and state disagree: the tree structure, or a leaf's shape at its path", async () => {
    const jb = session();
    const opt = optax.adam(1e-3);
    const state = await opt.init({ w, b });
    await assert.rejects(opt.update({ w }, state), /optax\.scale_by_adam: the updates and the state's mu must have the same tree structure .*keys \['w'\].*keys \['b', 'w'\]/);
    await assert.rejects(opt.update({ w, b: w }, state), (e: Error) => {
      assert.equal(e.name, "BridgeInputError");
      assert.equal((e as { path?: string }).path, "['b']");
      assert.match(e.message, /here the updates hold float32\[2\] but the state's mu holds float32\[1\]/);
      return true;
    });
    await assert.rejects(opt.update({ w, b }, (state as unknown[])[0]), /optax\.chain: the state must be an array of 2 states, one per transformation, got module ScaleByAdamState/);
    await assert.rejects(optax.applyUpdates({ w }, { w: b }), /optax\.apply_updates: here the parameters hold float32\[2\] but the updates holds float32\[1\]/);
    // Inside a trace the same errors are thrown at trace time, and the session keeps serving.
    const sgd = optax.sgd(0.1, { momentum: 0.9 });
    const s = await sgd.init({ w });
    await assert.rejects(jit((g: unknown, st: unknown) => sgd.update(g, st))({ v: w }, s), /optax\.trace: the updates and the state's trace must have the same tree structure/);
    assert.deepEqual(Array.from((await jb.get(await jb.put(w))).data as Float32Array), [1, 2]);
  });

  it("when adamw or lion is not given the parameters, or the gradients are complex", async () => {
    const opt = optax.adamw(1e-3);
    const state = await opt.init({ w });
    await assert.rejects(opt.update({ w }, state), /optax\.add_decayed_weights: update needs the parameters: call update\(updates, state, params\)/);
    const clip = optax.clipByGlobalNorm(1);
    const z = new NDArray(new Float32Array([1, 2]), [1], "complex64");
    await assert.rejects(clip.update({ z }, await clip.init({})), (e: Error) => {
      assert.equal((e as { path?: string }).path, "['z']");
      assert.match(e.message, /optax\.clip_by_global_norm: complex parameters are not supported \(the leaf is complex64\)/);
      return true;
    });
  });
});
