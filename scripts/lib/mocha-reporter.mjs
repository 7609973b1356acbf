// mocha's spec reporter, plus the run's counts written as JSON to
// $JAXBRIDGE_MOCHA_STATS so scripts/test.mjs need not parse human output.
// Loaded by mocha (--reporter scripts/lib/mocha-reporter.mjs), so it may import mocha.
import { writeFileSync } from "node:fs";
import Mocha from "mocha";

const { Spec } = Mocha.reporters;
const { EVENT_RUN_END } = Mocha.Runner.constants;

export default class JaxbridgeSpec extends Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(EVENT_RUN_END, () => {
      const file = process.env.JAXBRIDGE_MOCHA_STATS;
      if (!file) return;
      const { tests, passes, failures, pending } = this.stats;
      writeFileSync(file, JSON.stringify({ tests, passes, failures, pending }));
    });
  }
}
