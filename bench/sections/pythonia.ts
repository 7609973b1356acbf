import { createRequire } from "node:module";
import { fmtRatio, fmtUs, time } from "../measure.js";
import type { Row } from "../run.js";

/**
 * pythonia, the baseline a user would otherwise pick. It has no binary path,
 * so bulk data goes as base64 text (its fastest route; nested JS arrays are
 * far slower). Only the sizes it finishes in reasonable time are measured.
 */
export async function pythoniaSection(ctx: { python: string; rows: Row[]; bulk?: Record<number, number>; callUs?: number }): Promise<void> {
  process.env.PYTHON_BIN = ctx.python;
  const require = createRequire(import.meta.url);
  const { python } = require("pythonia") as { python: ((mod: string) => Promise<any>) & { exit(): void } };
  const { rows } = ctx;
  try {
    const jnp = await python("jax.numpy");
    const np = await python("numpy");
    const base64 = await python("base64");
    const one = await jnp.ones([1]);
    const call = await time(async () => {
      await jnp.negative(one);
    }, { warmup: 20, runs: 200 });
    rows.push({ name: "pythonia: trivial call (jnp.negative)", value: fmtUs(call.medianUs), ratio: ctx.callUs ? `${fmtRatio(call.medianUs / ctx.callUs)} slower` : "" });
    for (const mib of [1, 16]) {
      const bytes = Buffer.alloc(mib * 1024 * 1024, 7);
      const b64 = bytes.toString("base64");
      const t = await time(
        async () => {
          const arr = await jnp.asarray(await np.frombuffer(await base64.b64decode(b64), "float32"));
          const host = await np.asarray(arr);
          const back = await base64.b64encode(await host.tobytes());
          const s = await back.decode();
          if (typeof s !== "string" || s.length !== b64.length) throw new Error("pythonia round trip lost data");
        },
        { warmup: 1, runs: mib >= 16 ? 3 : 5, maxMs: 60_000 },
      );
      const ours = ctx.bulk?.[mib];
      rows.push({ name: `pythonia: ${mib} MiB there and back`, value: fmtUs(t.medianUs), ratio: ours ? `${fmtRatio(t.medianUs / ours)} slower` : "", goal: "≥ 100x slower than jaxbridge", ...(ours ? { pass: t.medianUs / ours >= 100 } : {}) });
    }
  } finally {
    python.exit();
  }
}
