/**
 * optax's losses against optax's own functions: generated inputs (float32
 * and float64, several shapes, targets given or not), each loss traced here
 * and run by lower.py, optax's run by jax.jit, compared bit for bit; and
 * the gradient of each (`grad` of its sum), against `jax.grad` of optax's.
 */
import assert from "node:assert/strict";
import type { DType } from "../../src/values/dtype.js";
import type { Tracer } from "../../src/trace/tracer.js";
import * as optax from "../../src/optim/index.js";
import * as nn from "../../src/trace/lib/nn.js";
import * as jnp from "../../src/trace/lib/jnp.js";
import { grad } from "../../src/trace/lib/transforms.js";
import { traceFlat } from "../../src/trace/trace.js";
import { Oracle, pick, randInt, randomArray, rng } from "../trace/support/oracle.js";

describe("optax losses: huberLoss, squaredError, l2Loss, softmaxCrossEntropy and their gradients have optax's bits", function () {
  this.timeout(300_000);
  const oracle = new Oracle();
  after(() => oracle.close());

  for (const x64 of [true, false]) {
    it(`generated inputs (x64 ${x64 ? "on" : "off"})`, async () => {
      const r = rng(x64 ? 11 : 12);
      const failures: string[] = [];
      for (let k = 0; k < 12; k++) {
        const dtype: DType = x64 ? pick(r, ["float32", "float64"] as DType[]) : "float32";
        const shape = Array.from({ length: randInt(r, 1, 2) }, () => randInt(r, 1, 6));
        const p = randomArray(r, dtype, shape, { lo: -3, hi: 3 });
        const t = randomArray(r, dtype, shape, { lo: -3, hi: 3 });
        const delta = pick(r, [1, 0.5, 2.25]);
        const nClasses = shape[shape.length - 1]!;
        const labels = randomArray(r, "int32", shape.slice(0, -1), { lo: 0, hi: nClasses - 1 });
        const cases: [string, (...xs: Tracer[]) => Tracer, string, typeof p[]][] = [
          ["huberLoss", (a, b) => optax.huberLoss(a, b, { delta }), `lambda a, b: __import__("optax").huber_loss(a, b, delta=${delta})`, [p, t]],
          ["huberLoss (no targets)", (a) => optax.huberLoss(a), `lambda a: __import__("optax").huber_loss(a)`, [p]],
          ["squaredError", (a, b) => optax.squaredError(a, b), `lambda a, b: __import__("optax").squared_error(a, b)`, [p, t]],
          ["l2Loss", (a, b) => optax.l2Loss(a, b), `lambda a, b: __import__("optax").l2_loss(a, b)`, [p, t]],
          [
            "softmaxCrossEntropy",
            (a, y) => optax.softmaxCrossEntropy(a, nn.oneHot(y, nClasses, { dtype })),
            `lambda a, y: __import__("optax").softmax_cross_entropy(a, jax.nn.one_hot(y, ${nClasses}, dtype=a.dtype))`,
            [p, labels],
          ],
        ];
        for (const [name, fn, py, args] of cases) {
          const { mismatch } = await oracle.compare(fn as never, args, py, { x64 });
          if (mismatch) failures.push(`${name} ${dtype}[${shape}]: ${mismatch}`);
          // The gradient JAX derives from our program equals the one it derives from optax's.
          const g = await oracle.compare(
            ((a: Tracer, ...rest: Tracer[]) => grad((z: Tracer) => jnp.sum(fn(z, ...rest)))(a)) as never,
            args,
            `lambda a, *rest: jax.grad(lambda z: jnp.sum((${py})(z, *rest)))(a)`,
            { x64 },
          );
          if (g.mismatch) failures.push(`grad of ${name} ${dtype}[${shape}]: ${g.mismatch}`);
        }
      }
      assert.deepEqual(failures, []);
    });
  }

  it("refuses integer predictions and targets of another shape, as optax does", () => {
    const f32 = (shape: number[]) => ({ dtype: "float32" as const, shape });
    assert.throws(() => traceFlat((a: Tracer) => optax.huberLoss(a), [{ dtype: "int32", shape: [2] }], { x64: true }), /optax\.huber_loss: predictions must be a floating array, got int32/);
    assert.throws(
      () => traceFlat((a: Tracer, b: Tracer) => optax.squaredError(a, b), [f32([2]), f32([3])], { x64: true }),
      /optax\.squared_error: predictions and targets must have the same shape \(optax does not broadcast them\), got \[2\] and \[3\]/,
    );
  });
});
