/**
 * Data-parallel linear regression on a multi-process JAX job: each process
 * holds half of the batch, gradients are averaged over every device of the
 * job, the parameters stay replicated.
 *
 *   node --import tsx examples/cluster.ts           # 2 embedded processes x 2 CPU devices on loopback
 *   JAXBRIDGE_CLUSTER_URLS=tcp://h0:5555,tcp://h1:5555 node --import tsx examples/cluster.ts
 *                                                   # sidecars started with serve --coordinator (the Compose "cluster" profile)
 *
 * Prints one line per step and the fitted weights (the data are made from w = [2, -3], b = 0.5).
 */
import { array, cluster, jnp, lax, type NDArray, shardMap, sharding, type Tracer } from "../src/index.js";

const urls = (process.env.JAXBRIDGE_CLUSTER_URLS ?? "").split(",").filter(Boolean);
const job = urls.length > 0 ? await cluster.connect(urls) : await cluster.start({ numProcesses: 2, numCpuDevices: 2 });
try {
  const devices = job.devices;
  console.log(`cluster: ${job.size} processes, devices ${devices.map((d) => `${d.id}@p${d.process_index}`).join(", ")}`);
  const mesh = job.makeMesh([devices.length], ["batch"]);
  const { NamedSharding, P } = sharding;

  // 16 rows per device; y = x @ [2, -3] + 0.5, exactly.
  const n = 16 * devices.length;
  const xs = Array.from({ length: n }, (_, i) => [Math.sin(i), Math.cos(3 * i)]);
  const x = array(xs, "float32");
  const y = array(xs.map(([a, b]) => [2 * a! - 3 * b! + 0.5]), "float32");
  const [gx, gy] = (await job.devicePut([x, y], new NamedSharding(mesh, P("batch")))) as cluster.ClusterArray[];
  let params = (await job.devicePut({ w: array([[0], [0]], "float32"), b: array([0], "float32") }, new NamedSharding(mesh, P()))) as { w: cluster.ClusterArray; b: cluster.ClusterArray };

  // Per device: the gradient of its rows' squared error, averaged over the job with pmean.
  const local = (p: { w: Tracer; b: Tracer }, xb: Tracer, yb: Tracer) => {
    const err = jnp.subtract(jnp.add(jnp.matmul(xb, p.w), p.b), yb);
    const scale = 2 / xb.shape[0]!;
    const g = lax.pmean({ w: jnp.multiply(jnp.matmul(jnp.transpose(xb), err), scale), b: jnp.multiply(jnp.sum(err, { axis: 0 }), scale) }, "batch");
    const loss = lax.pmean(jnp.mean(jnp.multiply(err, err)), "batch");
    return { p: { w: jnp.subtract(p.w, jnp.multiply(g.w, 0.3)), b: jnp.subtract(p.b, jnp.multiply(g.b, 0.3)) }, loss };
  };
  const step = job.jit(shardMap(local, { mesh, inSpecs: [P(), P("batch"), P("batch")], outSpecs: P() }));

  for (let i = 0; i < 40; i++) {
    const out = await step(params, gx, gy);
    params = out.p;
    if (i % 10 === 9) console.log(`step ${i + 1}: loss ${((await job.get(out.loss)) as NDArray).item()}`);
  }
  const w = (await job.get(params.w)) as NDArray;
  const b = (await job.get(params.b)) as NDArray;
  console.log(`w = [${[...w.data].map((v) => Number(v).toFixed(3)).join(", ")}], b = ${Number(b.data[0]).toFixed(3)}`);
} finally {
  await job.close();
}
