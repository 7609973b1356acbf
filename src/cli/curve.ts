/**
 * CURVE keys from the command line, for `repl --url` and `doctor --url`:
 * `--server-key` is the sidecar's public key (the key itself, its `.key`
 * certificate, or a file holding just the key) and `--client-key` this
 * client's `.key_secret` certificate. Reading them is src/keys.ts's job.
 */
import { loadCurveKeys } from "../wire/keys.js";
import type { CurveClientKeys } from "../wire/transport.js";

/** `--server-key` and `--client-key` to the session's `curve` option. */
export function curveFromArgs(opts: { serverKey?: string; clientKey?: string }): CurveClientKeys | undefined {
  if (opts.serverKey === undefined && opts.clientKey === undefined) return undefined;
  if (opts.serverKey === undefined || opts.clientKey === undefined) throw new Error("CURVE needs both --server-key (the sidecar's public key) and --client-key (your key pair)");
  return loadCurveKeys({ server: opts.serverKey, client: opts.clientKey });
}
