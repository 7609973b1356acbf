#!/usr/bin/env node
// Print the interpreter setup.mjs would choose, found the same way.
//   node scripts/lib/find-python.mjs          newest CPython >= 3.11 (honours $JAXBRIDGE_PYTHON)
//   node scripts/lib/find-python.mjs 3.11     newest CPython 3.11.x (ignores $JAXBRIDGE_PYTHON)
//   add --why to print the reason on stderr
// Prints the path on stdout; exits 1 (with the reason on stderr) when there is none.
import { choosePython, PythonNotFound } from "./python.mjs";

const args = process.argv.slice(2);
const why = args.includes("--why");
const seriesArg = args.find((a) => /^\d+\.\d+$/.test(a));
const series = seriesArg ? seriesArg.split(".").map(Number) : null;

try {
  const env = series ? { ...process.env, JAXBRIDGE_PYTHON: "" } : process.env;
  const py = await choosePython({ env, series });
  process.stdout.write(`${py.path}\n`);
  if (why) process.stderr.write(`Python ${py.full} at ${py.path}: ${py.why}${py.also ? `; ${py.also}` : ""}\n`);
} catch (error) {
  process.stderr.write(`${error instanceof PythonNotFound ? error.message : error.stack}\n`);
  process.exit(1);
}
