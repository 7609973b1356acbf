#!/usr/bin/env node
// The `jaxbridge` command (src/cli/main.ts). In a checkout it runs the
// TypeScript sources through tsx, so no build step is needed; an installed
// package (which ships dist/ and no src/) runs the compiled dist/cli/main.js.
//
// `jaxbridge setup` runs scripts/setup.mjs directly: it must work before what
// it installs exists (a fresh clone has no node_modules, so no tsx, and no
// dist/), and it takes its own options.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "src", "cli", "main.ts");
const dist = join(root, "dist", "cli", "main.js");

if (process.argv[2] === "setup") {
  const setup = join(root, "scripts", "setup.mjs");
  process.argv.splice(1, 2, setup);
  await import(pathToFileURL(setup).href);
} else {
  const { main } = await import(pathToFileURL(await entry()).href);
  await main(process.argv);
}

async function entry() {
  if (existsSync(src)) {
    try {
      const { register } = await import("tsx/esm/api");
      register();
      return src;
    } catch {
      if (existsSync(dist)) return dist;
      console.error("jaxbridge: a checkout needs its dev dependencies to run from source (npm ci), or a build (npm run build)");
      process.exit(2);
    }
  }
  if (existsSync(dist)) return dist;
  console.error(`jaxbridge: neither ${src} nor ${dist} exists; reinstall the package`);
  process.exit(2);
}
