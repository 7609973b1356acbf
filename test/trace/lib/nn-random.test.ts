/**
 * jax.nn and jax.random from TypeScript against Python: activations over
 * every float dtype with special values, and random samplers bit-identical
 * to jax.random with the same seeds (keys are the same uint32[2] data).
 */
import assert from "node:assert/strict";
import { random } from "../../../src/trace/lib/index.js";
import { runCases } from "../support/cases.js";
import { ACTIVATIONS, activationCases, oneHotCases, randomCases } from "../support/nn-random-cases.js";
import { Oracle } from "../support/oracle.js";

const oracle = new Oracle();
after(() => oracle.close());

for (const x64 of [false, true]) {
  describe(`jax.nn (x64=${x64})`, function () {
    this.timeout(600000);
    it(`${ACTIVATIONS.length} activations × float dtypes with special values agree bit for bit`, async () => {
      await runCases(oracle, activationCases(x64), x64, 16);
    });
    it("one_hot agrees", async () => {
      await runCases(oracle, oneHotCases(), x64);
    });
  });
}

for (const x64 of [false, true]) {
  describe(`jax.random (x64=${x64})`, function () {
    this.timeout(600000);
    it("host keyData(seed) equals jax.random.key_data(jax.random.key(seed))", async () => {
      const seeds = [0, 1, 42, 2 ** 31 - 1, -1, -12345, 123456789];
      const theirs = await oracle.exec<number[][]>(x64, `result = [[int(v) for v in jax.random.key_data(jax.random.key(s))] for s in ${JSON.stringify(seeds)}]`);
      assert.deepEqual(
        seeds.map((s) => Array.from(random.keyData(s, x64).data as Uint32Array)),
        theirs,
      );
    });

    it("30 generated sampler calls (seeds, shapes, dtypes, split/fold_in chains) are bit-identical to jax.random", async () => {
      await runCases(oracle, randomCases(x64), x64, 10);
    });

    it("keys passed in as NDArrays (jax.random.PRNGKey data) sample the same", async () => {
      const k = random.keyData(7, x64);
      await runCases(oracle, [{ desc: "normal from key data", args: [k], ts: ([key]) => random.normal(key!, [4]), py: "random.normal(x0, (4,))" }], x64);
    });
  });
}
