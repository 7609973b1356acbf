// Running npm from a script that npm may itself be running (`npm test` runs
// setup, which runs `npm ci`; the consumer test runs `npm pack` and
// `npm install` in another folder). Node built-ins only.
import { existsSync } from "node:fs";
import { basename } from "node:path";

/** npm's environment inside a lifecycle script, minus what would steer a nested install. */
export function nestedNpmEnv() {
  const keep = /^(registry|@[^:]+:registry|cache|userconfig|globalconfig|cafile|ca|cert|key|proxy|https?_proxy|noproxy|strict_ssl|fetch_.*|offline|prefer_offline|prefer_online|maxsockets|_auth.*|\/\/.*)$/i;
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_config_/i.test(k)) {
      if (keep.test(k.slice("npm_config_".length)) && v !== "") env[k] = v;
    } else if (!/^npm_(lifecycle_|package_|command$|execpath$|node_execpath$)/i.test(k)) {
      env[k] = v;
    }
  }
  return env;
}

/** How to run npm: the very npm that runs this script when there is one. */
export function npmCommand() {
  const execpath = process.env.npm_execpath;
  if (execpath && /npm-cli\.[cm]?js$/.test(basename(execpath)) && existsSync(execpath)) return [process.execPath, [execpath]];
  return [process.platform === "win32" ? "npm.cmd" : "npm", []];
}
