import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Recoverable } from "node:repl";
import { loadTransformer, toJavaScript } from "../../src/repl/transform.js";
import { drawChart, toSeries } from "../../src/repl/plot.js";
import { completeRemote, pythonNamespace, RemoteNames } from "../../src/repl/complete.js";
import { trimTraceback } from "../../src/repl/display.js";
import { array } from "../../src/index.js";
import type { Session } from "../../src/session/session.js";
import { sidecarPython } from "../../src/wire/python-env.js";
import { Tmux } from "../support/tmux.js";
import { freePort } from "../support/net.js";

const ROOT = resolve(import.meta.dirname, "..", "..");
const BIN = join(ROOT, "bin", "jaxbridge.mjs");

describe("repl: TypeScript input", () => {
  before(() => loadTransformer());
  it("strips types and keeps await", () => {
    assert.equal(toJavaScript("const x: number = await f()"), "var x = await f();\n");
    assert.equal(toJavaScript("interface P { x: number }"), "");
    assert.equal(toJavaScript("x as any"), "x;\n");
  });

  it("makes top-level const, let and class redeclarable, and nothing nested", () => {
    assert.equal(toJavaScript("let y = 1; const z = 2"), "var y = 1;\nvar z = 2;\n");
    assert.equal(toJavaScript("if (a) {\n const q = 1\n}"), "if (a) {\n  const q = 1;\n}\n");
    assert.equal(toJavaScript("class A { x: number = 1 }\nconst b = new A()"), "var A = class A {\n  x = 1;\n};\nvar b = new A();\n");
    // a template literal's lines are not statements
    assert.equal(toJavaScript("const s = `a\nconst b = 1\n${`x`}`"), "var s = `a\nconst b = 1\n${`x`}`;\n");
  });

  it("reads {a: 1} as an object, and static imports as dynamic ones", () => {
    assert.equal(toJavaScript("{a: 1}"), "({ a: 1 });\n");
    assert.equal(toJavaScript("import {a, b as c} from 'm'"), 'var { a, b: c } = await import("m");\n');
    assert.equal(toJavaScript("import d, * as ns from 'm'"), 'var ns = await import("m"), d = ns.default;\n');
  });

  it("asks for more lines when the input is incomplete, and shows where a syntax error is", () => {
    for (const incomplete of ["function f() {", "foo(1,", "`abc", "/* note"]) assert.throws(() => toJavaScript(incomplete), (e: unknown) => e instanceof Recoverable, incomplete);
    assert.throws(() => toJavaScript("let x y"), (e: unknown) => e instanceof SyntaxError && /Expected ";" but found "y"[\s\S]*\^/.test(e.message));
  });
});

describe("repl: plots and completion (no sidecar)", () => {
  it("draws a resampled line chart and leaves out non-finite values", () => {
    const xs = Array.from({ length: 1000 }, (_, i) => Math.sin(i / 100));
    xs[10] = NaN;
    const chart = String(drawChart(toSeries(array(xs, "float64")), { width: 50, height: 8 }));
    const lines = chart.split("\n");
    assert.equal(lines.length, 10, chart);
    assert.match(chart, /╭/);
    assert.match(lines[lines.length - 1]!, /n=1000 \(mean of 20 per column\).*1 non-finite values left out/);
    assert.throws(() => toSeries(array([[1, 2, 3, 4, 5, 6, 7, 8, 9]], "float32")), /\[n, k\] with k ≤ 8/);
  });

  it("trims Python tracebacks to their last frames", () => {
    const tb = Array.from({ length: 12 }, (_, i) => `  File "f${i}.py", line ${i}, in g${i}\n    code${i}()`).join("\n");
    const { frames, hidden } = trimTraceback(tb, 3);
    assert.equal(hidden, 9);
    assert.deepEqual(frames.map((f) => f.split("\n")[0]), ['  File "f9.py", line 9, in g9', '  File "f10.py", line 10, in g10', '  File "f11.py", line 11, in g11']);
  });

  it("completes dotted names in strings and on name proxies from list_attrs", async () => {
    const listing: Record<string, { name: string; kind: string }[]> = {
      "": [{ name: "jax", kind: "module" }],
      "jax.numpy": [
        { name: "sum", kind: "function" },
        { name: "subtract", kind: "function" },
        { name: "linalg", kind: "module" },
      ],
    };
    const fake = { closed: false, request: async (_op: string, f: { path: string }) => listing[f.path] ?? [] } as unknown as Session;
    const names = new RemoteNames(() => fake);
    const py = pythonNamespace(async () => null);
    const lookup = (n: string) => (n === "py" ? py : undefined);
    assert.deepEqual(await completeRemote('jb.call("jax.numpy.su', names, lookup), [["jax.numpy.sum", "jax.numpy.subtract"], "jax.numpy.su"]);
    assert.deepEqual(await completeRemote('jb.call("ja', names, lookup), [["jax"], "ja"]);
    assert.deepEqual(await completeRemote("x = py.jax.numpy.li", names, lookup), [["py.jax.numpy.linalg"], "py.jax.numpy.li"]);
    assert.equal(await completeRemote('f("done", ', names, lookup), null);
    assert.equal(await completeRemote("Math.ma", names, lookup), null);
  });
});


describe("repl in a terminal (tmux)", function () {
  this.timeout(180_000);
  let dir: string;
  let t: Tmux;

  before(async function () {
    if (spawnSync("tmux", ["-V"]).status !== 0) return this.skip(); // these tests need tmux (apt-get install tmux)
    dir = mkdtempSync(join(tmpdir(), "jaxbridge-repl-"));
    t = Tmux.start([process.execPath, BIN, "repl"], { env: { JAXBRIDGE_REPL_HISTORY: join(dir, "history") }, unset: ["NO_COLOR", "NODE_DISABLE_COLORS", "FORCE_COLOR"], cwd: ROOT });
    await t.waitFor(/embedded sidecar pid \d+[\s\S]*\njb>$/, { timeoutMs: 120_000 });
  });

  after(() => {
    t?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("evaluates TypeScript with top-level await and prints arrays like numpy", async () => {
    assert.equal(await t.run("const answer: number = 41 + 1"), "");
    assert.equal(await t.run("answer"), "42");
    assert.equal(await t.run("const answer = 7; answer"), "7");
    assert.equal(await t.run('array([[1, 2], [3, 4]], "float32")'), "array([[1., 2.],\n       [3., 4.]], dtype=float32)");
    assert.equal(await t.run('await jb.call("jax.numpy.arange", 6, kw({ dtype: "float32" }))'), "DeviceArray(float32[6], device=cpu:0)\narray([0., 1., 2., 3., 4., 5.], dtype=float32)");
    // big device arrays print their summary; show() fetches them
    assert.match(await t.run('var big = await jb.call("jax.numpy.ones", [600, 600])'), /^$/);
    assert.match(await t.run("big"), /^DeviceArray\(float64\[600, 600\], device=cpu:0\) \(2\.7 MiB not fetched: `await show\(x\)`\)$/);
    assert.match(await t.run("await show(big)"), /^DeviceArray\(float64\[600, 600\], device=cpu:0\)\narray\(\[\[1\., 1\., 1\., \.\.\., 1\., 1\., 1\.\],/);
  });

  it("completes JavaScript names, and a remote module's attributes after its name", async function () {
    const probe = await t.run('await jb.request("list_attrs", { path: "" }).then(() => "yes", (e) => e.remoteType)');
    if (probe !== "'yes'") return this.skip();

    t.type("jn");
    t.press("Tab");
    await t.waitFor(/jb> jnp$/);
    t.press("C-u");

    t.type('jb.call("jax.numpy.linalg.sv');
    t.press("Tab");
    await t.waitFor(/jb> jb\.call\("jax\.numpy\.linalg\.svd$/);
    t.press("Tab");
    await t.waitFor(/jax\.numpy\.linalg\.svd\s+jax\.numpy\.linalg\.svdvals/);
    t.press("C-u");

    t.type("py.jax.nn.rel");
    t.press("Tab");
    await t.waitFor(/jb> py\.jax\.nn\.relu$/);
    t.press("Tab");
    await t.waitFor(/py\.jax\.nn\.relu\s+py\.jax\.nn\.relu6/);
    t.press("C-u");
    assert.equal(await t.run("await py.jax.numpy.sum(array([1, 2, 3]))"), "DeviceArray(int64[], device=cpu:0)\narray(6)");
  });

  it("shows a Python error's traceback, trimmed, in colour", async () => {
    const since = t.mark() - 1;
    const out = await t.run('await jb.call("jax.numpy.matmul", array([1, 2, 3]), array([1, 2]))');
    assert.match(out, /^Python TypeError: dot_general requires contracting dimensions to have the same shape/);
    assert.match(out, /Traceback \(most recent call last\)[\s\S]*File ".*jax.*", line \d+, in matmul/);
    assert.doesNotMatch(out, /at Session\./, "no JavaScript stack for Python errors");
    const coloured = await t.waitFor(/Python TypeError/, { since, escapes: true });
    assert.match(coloured, /\x1b\[[0-9;]*m[^\n]*Python TypeError/);
    assert.equal(await t.run("_error.remoteType"), "'TypeError'");
  });

  it("Ctrl-C abandons a long call and frees its results; the same session keeps working", async () => {
    await t.run('var m = await jb.call("jax.numpy.add", await jb.call("jax.numpy.ones", [1600, 1600]), await jb.call("jax.numpy.eye", 1600))');
    const before = Number(await t.run("(await jb.stats()).handles"));
    const since = t.mark() - 1;
    t.line('await jb.call("jax.numpy.linalg.svd", m)');
    await t.waitFor(/running \(Ctrl-C interrupts\) \d/, { since });
    t.press("C-c");
    const told = await t.waitFor(/Interrupted: abandoned 1 pending call \(results are freed when they arrive\)[\s\S]*\njb>$/, { since });
    // The truth: the sidecar is not interrupted (unless svd finished in the meantime).
    assert.match(told, /\(results are freed when they arrive\)(; the sidecar carries on|; the sidecar is still running the call jax\.numpy\.linalg\.svd \(for \d+\.\d s so far\), and later calls wait behind it; \.restart stops it)\n/);
    const next = await t.run('var five = await jb.call("jax.numpy.add", 2, 3); await show(five)', { timeoutMs: 60_000 });
    assert.match(next, /^(\(queued behind the interrupted call jax\.numpy\.linalg\.svd, which the sidecar has been running for \d+\.\d s; \.restart stops it\)\n)?DeviceArray\(int64\[\], device=cpu:0\)\narray\(5\)$/);
    assert.equal(await t.run("jb.inFlight"), "0");
    const after = Number(await t.run("(await jb.stats()).handles"));
    // `five` is new; the three arrays svd returned were freed when they arrived
    assert.ok(after - before <= 1, `handles before ${before}, after ${after}`);
  });

  it("eager ops: jnp.sin(x) and x.mul(2).add(1).sum() just work, and a failed op shows its Python error", async () => {
    assert.equal(await t.run('jnp.sin(array([0, 1, 2], "float32"))'), "DeviceArray(float32[3], device=cpu:0)\narray([0.        , 0.84147096, 0.9092974 ], dtype=float32)");
    assert.equal(await t.run('var xd = await jb.put(array([1, 2, 3], "float32")); xd.mul(2).add(1).sum()'), "DeviceArray(float32[], device=cpu:0)\narray(15., dtype=float32)");
    assert.equal(await t.run("xd.T.shape"), "[ 3 ]");
    assert.match(await t.run("xd + 1"), /^Uncaught:\nTypeError: DeviceArray\(float32\[3\][^\n]*is not a JS number[^\n]*x\.add\(1\)/);
    // 4 TiB: the sidecar refuses the program before XLA sees it (its max_array_bytes), and the REPL shows that error.
    assert.match(await t.run('jnp.zeros([2 ** 40], "float32").add(1)'), /^Python LimitExceeded: program\.inputs\[0\], float32\[1099511627776\], is 4096\.0 GiB, over the sidecar's max_array_bytes/);
  });

  it("Ctrl-C on a long eager computation says the sidecar is still busy with it; the next call says it is queued behind it; .restart is the way out", async () => {
    await t.run('var sq = jnp.ones([2000, 2000], "float32").mul(1e-4)');
    const since = t.mark() - 1;
    t.line("var acc = sq; for (let i = 0; i < 60; i++) acc = jnp.tanh(acc.matmul(sq)); await acc.block()");
    await t.waitFor(/running \(Ctrl-C interrupts\) \d/, { since });
    t.press("C-c");
    const told = await t.waitFor(/Interrupted: abandoned \d+ pending calls \(results are freed when they arrive\); the sidecar is still busy with \d+ of them \(the first sent \d+\.\d s ago\), and later calls wait behind them; \.restart stops them\n[\s\S]*jb>$/, { since });
    void told;
    const since2 = t.mark() - 1;
    t.line("await jnp.add(2, 3).toHost()");
    await t.waitFor(/\(queued behind \d+ interrupted calls the sidecar is still busy with, the first sent \d+\.\d s ago; \.restart stops them\)/, { since: since2 });
    t.press("C-c");
    await t.waitFor(/Interrupted[\s\S]*\njb>$/, { since: since2 });
    const pid = Number(await t.run("jb.info.pid"));
    assert.match(await t.run(".restart", { timeoutMs: 120_000 }), /embedded sidecar pid \d+/);
    assert.notEqual(Number(await t.run("jb.info.pid")), pid);
    assert.equal(await t.run("await jnp.add(2, 3).toHost()"), "array(5)");
  });

  it("Ctrl-C interrupts a long top-level filterScan; the loss curve of a short one plots", async function () {
    if ((await t.run("typeof unstackPytree")) !== "'function'") return this.skip(); // src/lerax/utils.ts (top-level filterScan) is not there yet
    await t.run('var w0 = await jb.call("jax.numpy.multiply", 0.01, await jb.call("jax.numpy.ones", [200, 200], kw({ dtype: "float32" })))');
    await t.run("var step = (w: any) => { const w2 = jnp.tanh(jnp.matmul(w, w)).add(0.001); return [w2, jnp.sum(w2)] as const }");
    assert.equal(await t.run("var [w, losses] = await filterScan(step, w0, null, { length: 300 }); losses.shape"), "[ 300 ]");
    assert.match(await t.run(".plot losses"), /┤[\s\S]*n=300 \(mean of \d+ per column\)/);
    const since = t.mark() - 1;
    t.line("await filterScan(step, w0, null, { length: 40000 })");
    await t.waitFor(/running \(Ctrl-C interrupts\) \d/, { since });
    t.press("C-c");
    await t.waitFor(/Interrupted: abandoned \d+ pending calls? \(results are freed when they arrive\)[\s\S]*\njb>$/, { since });
    // The sidecar finishes the interrupted scan first, and the next call says so while it waits.
    assert.match(await t.run("(await filterScan(step, w0, null, { length: 3 }))[1].shape", { timeoutMs: 90_000 }), /^(\(queued behind the interrupted program, which the sidecar has been running for \d+\.\d s; \.restart stops it\)\n)?\[ 3 \]$/);
  });

  it(".plot and plot() draw line plots", async () => {
    const out = await t.run('.plot await jb.call("jax.numpy.sin", await jb.call("jax.numpy.linspace", 0, 6.28, 300))');
    assert.match(out, /1\.00 ┤.*╭─+╮/);
    assert.match(out, /n=300 \(mean of \d per column\)\s+min=-1\.000\s+max=1\.000/);
    assert.match(await t.run("await plot([1, 2, 3, 2, 1])"), /╭╮[\s\S]*n=5/);
    assert.match(await t.run(".plot"), /usage: \.plot EXPR/);
  });

  it(".devices lists the sidecar's devices; .help lists the commands", async () => {
    assert.match(await t.run(".devices"), /JAX [\d.]+ on cpu[\s\S]*\n\s+0\s+cpu:0/);
    const help = await t.run(".help");
    for (const cmd of ["connect", "devices", "plot", "restart", "exit"]) assert.match(help, new RegExp(`^  \\.${cmd}\\s`, "m"));
    // The equinox example says how to allow equinox.nn (the default allow-list refuses it).
    assert.match(help, /py\.equinox\.nn\.MLP[\s\S]*jaxbridge repl --allow equinox\.nn/);
  });

  it(".restart brings a working session back after the sidecar was killed", async () => {
    const pid = Number(await t.run("jb.info.pid"));
    assert.equal(await t.run('process.kill(jb.info.pid, "SIGKILL")'), "true");
    assert.match(await t.run('await jb.call("jax.numpy.add", 2, 3)'), /^SidecarDiedError: the embedded sidecar \(pid \d+\) was killed by SIGKILL[\s\S]*Type \.restart/);
    assert.match(await t.run(".restart", { timeoutMs: 120_000 }), /embedded sidecar pid \d+/);
    const pid2 = Number(await t.run("jb.info.pid"));
    assert.notEqual(pid2, pid);
    assert.equal(await t.run('await jb.call("jax.numpy.add", 2, 3)'), "DeviceArray(int64[], device=cpu:0)\narray(5)");
    await t.run('"history-marker-" + 17');
  });

  describe("with --url, after the first REPL has exited", () => {
    let sidecar: ChildProcess;
    let url: string;
    let t2: Tmux;

    before(async function () {
      const since = t.mark() - 1;
      t.line(".exit");
      await t.waitFor(/\[exited 0\]/, { since });
      url = `tcp://127.0.0.1:${await freePort()}`;
      sidecar = spawn(sidecarPython(), ["-m", "jaxbridge_sidecar", "serve", "--endpoint", url, "--parent-pid", String(process.pid)], { stdio: ["ignore", "pipe", "ignore"] });
      await new Promise<void>((res, rej) => {
        sidecar.stdout!.on("data", (d: Buffer) => d.toString().includes("JAXBRIDGE READY") && res());
        sidecar.once("exit", (code) => rej(new Error(`serve exited with ${code}`)));
      });
      t2 = Tmux.start([process.execPath, BIN, "repl", "--url", url], { env: { JAXBRIDGE_REPL_HISTORY: join(dir, "history"), NO_COLOR: "1" }, cwd: ROOT });
      await t2.waitFor(/sidecar at tcp:\/\/127\.0\.0\.1:\d+[\s\S]*\njb>$/, { timeoutMs: 120_000 });
    });

    after(() => {
      t2?.kill();
      sidecar?.kill();
    });

    it("keeps history across runs", async () => {
      t2.press("Up");
      await t2.waitFor(/jb> \.exit$/);
      t2.press("Up");
      await t2.waitFor(/jb> "history-marker-" \+ 17$/);
      t2.press("C-u");
    });

    it("prints errors without colour under NO_COLOR", async () => {
      const since = t2.mark() - 1;
      await t2.run('await jb.call("jax.numpy.matmul", array([1, 2, 3]), array([1, 2]))');
      const raw = await t2.waitFor(/Python TypeError/, { since, escapes: true });
      assert.doesNotMatch(raw, /\x1b\[/);
    });

    it(".connect switches between the remote sidecar and an embedded one", async () => {
      assert.match(await t2.run(".connect", { timeoutMs: 120_000 }), /embedded sidecar pid \d+/);
      assert.match(await t2.run(`.connect ${url}`, { timeoutMs: 60_000 }), /sidecar at tcp:\/\/127\.0\.0\.1:\d+ \(pid \d+\)/);
      assert.equal(await t2.run("jb.info.pid"), String(sidecar.pid));
      assert.equal(await t2.run('await jb.call("jax.numpy.add", 2, 3)'), "DeviceArray(int64[], device=cpu:0)\narray(5)");
    });
  });
});
