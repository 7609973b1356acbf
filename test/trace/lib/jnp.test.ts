/**
 * The jnp surface against jax.numpy: generated cases (random dtypes, shapes,
 * broadcasting, special values; support/jnp-cases.ts) traced in TypeScript,
 * lowered by lower.py, and compared bit for bit with the same expression run
 * by jax.jit in Python, in both x64 modes.
 */
import { runCases } from "../support/cases.js";
import { binaryCases, creationCases, indexingCases, linalgCases, reductionCases, shapeCases, unaryCases } from "../support/jnp-cases.js";
import { Oracle } from "../support/oracle.js";

const oracle = new Oracle();
after(() => oracle.close());

for (const x64 of [false, true]) {
  describe(`jnp elementwise vs jax.numpy (x64=${x64})`, function () {
    this.timeout(600000);
    it("60 generated unary cases agree bit for bit", async () => {
      await runCases(oracle, unaryCases(x64 ? 11 : 12, x64, 60), x64);
    });
    it("70 generated binary cases (mixed dtypes, broadcasting) agree bit for bit", async () => {
      await runCases(oracle, binaryCases(x64 ? 21 : 22, x64, 70), x64);
    });
  });
}

// --- reductions, shapes, linear algebra, creation, indexing ------------------------------------------------

for (const x64 of [false, true]) {
  describe(`jnp reductions, shapes, linear algebra, creation, indexing (x64=${x64})`, function () {
    this.timeout(600000);
    it("52 generated reductions (axis, keepdims, dtypes) agree bit for bit", async () => {
      await runCases(oracle, reductionCases(x64 ? 31 : 32, x64), x64);
    });
    it("shape manipulation agrees", async () => {
      await runCases(oracle, shapeCases(41), x64);
    });
    it("matmul/dot (batch broadcasting, mixed dtypes) and einsum agree", async () => {
      await runCases(oracle, linalgCases(x64 ? 51 : 52, x64), x64);
    });
    it("array creation agrees", async () => {
      await runCases(oracle, creationCases(x64), x64);
    });
    it("basic and advanced indexing and .at updates agree", async () => {
      await runCases(oracle, indexingCases(61), x64);
    });
  });
}
