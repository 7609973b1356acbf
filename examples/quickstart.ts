/**
 * The quickstart: `npm start` runs this against an embedded sidecar.
 * Set JAXBRIDGE_URL=tcp://host:5555 to run it against a sidecar elsewhere.
 */
import { array, connect, kw, type DeviceArray, type NDArray } from "../src/index.js";

const jb = await connect(process.env.JAXBRIDGE_URL ? { url: process.env.JAXBRIDGE_URL } : {});
try {
  const { info } = jb;
  console.log(`jaxbridge: JAX ${info.jax} on ${info.backend} (${info.devices.map((d) => d.str).join(", ")}), Python ${info.python}`);

  // Host arrays go to the device once; results stay there as handles.
  const x = array([[1, 2], [3, 4]], "float32");
  const w = array([[0.5, -1], [2, 0.25]], "float32");
  const [dx, dw] = await jb.put([x, w]);
  const y = await jb.call<DeviceArray>("jax.numpy.matmul", dx, dw);
  console.log("x @ w =", await y.toHost());

  const total = await jb.call<DeviceArray>("jax.numpy.sum", y, kw({ axis: 0 }));
  console.log("column sums =", await total.toHost());

  // A raw uint32[2] key, as jax.random.PRNGKey makes it.
  const key = await jb.call<DeviceArray>("jax.random.PRNGKey", 0);
  const noise = await jb.callWith<NDArray>("jax.random.normal", { args: [key, [3]], fetch: true });
  console.log("jax.random.normal(key(0), (3,)) =", noise);

  for (const a of [dx, dw, y, total, key]) a.dispose();
} finally {
  await jb.close();
}
