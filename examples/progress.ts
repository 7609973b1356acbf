/**
 * Train a tiny linear regression with SGD inside one `filterScan` on the
 * sidecar; a per-step callback drives a terminal progress bar (cli-progress)
 * while the compiled scan runs. `tsx examples/progress.ts [steps]`.
 */
import cliProgress from "cli-progress";
import { array, callbackWrapper, connect, filterScan, jnp, type NDArray, type Tracer } from "../src/index.js";

const steps = Number(process.argv[2] ?? 3000);
const jb = await connect();
try {
  // y = 3x - 2 plus a little structure-free noise, 64 samples.
  const xs = Array.from({ length: 64 }, (_, i) => i / 32 - 1);
  const x = array(xs, "float32");
  const y = array(xs.map((v, i) => 3 * v - 2 + 0.01 * Math.sin(i * 7)), "float32");

  const bar = new cliProgress.SingleBar({ format: "train |{bar}| {value}/{total} steps | loss {loss}", noTTYOutput: true, notTTYSchedule: 250 }, cliProgress.Presets.shades_classic);
  bar.start(steps, 0, { loss: "?" });
  let last = { step: 0, loss: NaN };
  const report = callbackWrapper((step: NDArray, loss: NDArray) => {
    last = { step: (step.item() as number) + 1, loss: loss.item() as number };
    bar.update(last.step, { loss: last.loss.toFixed(5) });
  }, { ordered: true });

  const lr = 0.1;
  const step = (p: { w: Tracer; b: Tracer; i: Tracer }) => {
    const err = p.w.mul(x).add(p.b).sub(y);
    const loss = jnp.mean(err.mul(err));
    const gw = jnp.mean(err.mul(x)).mul(2);
    const gb = jnp.mean(err).mul(2);
    report(p.i, loss);
    return [{ w: p.w.sub(gw.mul(lr)), b: p.b.sub(gb.mul(lr)), i: p.i.add(1) }, loss] as const;
  };
  const init = { w: array(0, "float32"), b: array(0, "float32"), i: array(0, "int32") };
  const [final] = (await filterScan(step as never, init, null, { length: steps, fetch: true })) as unknown as [{ w: NDArray; b: NDArray }];
  bar.stop();
  console.log(`done: ${last.step} steps reported, w=${(final.w.item() as number).toFixed(4)} b=${(final.b.item() as number).toFixed(4)} loss=${last.loss.toFixed(6)}`);
} finally {
  await jb.close();
}
