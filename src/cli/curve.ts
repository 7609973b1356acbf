/**
 * CURVE keys from the command line, for `repl --url` and `doctor --url`.
 *
 * A key argument is either a Z85 key itself (40 characters) or a file: a
 * ZeroMQ certificate as pyzmq's `zmq.auth.create_certificates` writes it
 * (`public-key = "..."`, and `secret-key = "..."` in the `.key_secret`
 * file), or a file holding just the key.
 *
 * TODO(keys): once src/keys.ts lands, read keys with it instead.
 */
import { existsSync, readFileSync } from "node:fs";
import type { CurveClientKeys } from "../transport.js";

const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

function readKeyText(arg: string): string {
  if (Z85_KEY.test(arg)) return `public-key = "${arg}"`;
  if (!existsSync(arg)) throw new Error(`${arg}: no such key file (and not a 40-character Z85 key)`);
  return readFileSync(arg, "utf8");
}

function field(text: string, name: "public-key" | "secret-key"): string | undefined {
  const m = new RegExp(`^\\s*${name}\\s*=\\s*"([^"]{40})"`, "m").exec(text);
  return m?.[1];
}

/** A public key from a key or a certificate file. */
export function readPublicKey(arg: string): string {
  const text = readKeyText(arg);
  const key = field(text, "public-key") ?? (Z85_KEY.test(text.trim()) ? text.trim() : undefined);
  if (!key) throw new Error(`${arg}: no public-key in it`);
  return key;
}

/** The client's key pair from a secret certificate file (`public-key` and `secret-key`). */
export function readKeyPair(arg: string): { publicKey: string; secretKey: string } {
  const text = readKeyText(arg);
  const publicKey = field(text, "public-key");
  const secretKey = field(text, "secret-key");
  if (!publicKey || !secretKey) throw new Error(`${arg}: a client key file needs both public-key and secret-key (the .key_secret file that keygen writes)`);
  return { publicKey, secretKey };
}

/** `--server-key` and `--client-key` to the session's `curve` option. */
export function curveFromArgs(opts: { serverKey?: string; clientKey?: string }): CurveClientKeys | undefined {
  if (opts.serverKey === undefined && opts.clientKey === undefined) return undefined;
  if (opts.serverKey === undefined || opts.clientKey === undefined) throw new Error("CURVE needs both --server-key (the sidecar's public key) and --client-key (your key pair)");
  return { serverPublicKey: readPublicKey(opts.serverKey), ...readKeyPair(opts.clientKey) };
}
