/**
 * CURVE keys for reaching a remote sidecar: loading ZeroMQ certificate files
 * (the format `python -m jaxbridge_sidecar keygen` and pyzmq's `zmq.auth`
 * write) into the `curve` option of `connect()`, and making new pairs.
 *
 * A certificate is text; `NAME.key` holds the public key, `NAME.key_secret`
 * the pair and is kept 0600:
 *
 *     #   ZeroMQ CURVE **Secret** Certificate
 *     metadata
 *     curve
 *         public-key = "<40 Z85 characters>"
 *         secret-key = "<40 Z85 characters>"
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { curveKeyPair } from "zeromq";
import { BridgeInputError } from "../values/errors.js";
import type { CurveClientKeys } from "./transport.js";

export type { CurveClientKeys } from "./transport.js";

export interface KeyPair {
  /** Z85, 40 characters. */
  publicKey: string;
  secretKey: string;
}

export interface Certificate {
  publicKey: string;
  /** Present in a `.key_secret` file only. */
  secretKey?: string;
}

const Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
const Z85_SET = new Set(Z85);

/** True for a 40-character Z85 string, the text form of a 32-byte CURVE key. */
export function isZ85Key(s: string): boolean {
  if (s.length !== 40) return false;
  for (const ch of s) if (!Z85_SET.has(ch)) return false;
  return true;
}

function checkKey(key: string, where: string): string {
  if (!isZ85Key(key)) throw new BridgeInputError(`${where}: a CURVE key is 40 Z85 characters, got ${JSON.stringify(key.length > 48 ? `${key.slice(0, 12)}...` : key)}`);
  return key;
}

/** Read the keys from the text of a ZeroMQ certificate. */
export function parseCertificate(text: string, where = "certificate"): Certificate {
  let publicKey: string | undefined;
  let secretKey: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith("#")) continue;
    const m = /^(public|secret)-key\s*=\s*["']?([^"'\s]*)["']?\s*$/.exec(line);
    if (!m) continue;
    if (m[1] === "public") publicKey = checkKey(m[2]!, where);
    else secretKey = checkKey(m[2]!, where);
  }
  if (publicKey === undefined) {
    throw new BridgeInputError(`${where} is not a ZeroMQ certificate: no \`public-key = "..."\` line (make one with \`jaxbridge keygen\` or \`python -m jaxbridge_sidecar keygen\`)`);
  }
  return secretKey === undefined ? { publicKey } : { publicKey, secretKey };
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new BridgeInputError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

/** The public key in a certificate file (`.key` or `.key_secret`). */
export function loadPublicKey(path: string): string {
  return parseCertificate(readText(path, "key file"), path).publicKey;
}

/** The key pair in a `.key_secret` certificate file. */
export function loadKeyPair(path: string): KeyPair {
  const cert = parseCertificate(readText(path, "key file"), path);
  if (cert.secretKey === undefined) throw new BridgeInputError(`${path} holds only a public key: pass the \`.key_secret\` file of the pair`);
  return { publicKey: cert.publicKey, secretKey: cert.secretKey };
}

/** A key given as itself (40 Z85 characters), or a file holding a certificate or just the key. */
function publicKeyFrom(keyOrPath: string): string {
  if (isZ85Key(keyOrPath) && !existsSync(keyOrPath)) return keyOrPath;
  const text = readText(keyOrPath, "key file");
  return isZ85Key(text.trim()) ? text.trim() : parseCertificate(text, keyOrPath).publicKey;
}

export interface CurveFiles {
  /** The sidecar's public key: its `.key` certificate file, or the 40-character key itself. */
  server: string;
  /** This client's pair: a `.key_secret` certificate file, or the pair itself. */
  client: string | KeyPair;
}

/** The `curve` option of `connect()` from key files: `connect({url, curve: loadCurveKeys({server: "keys/server.key", client: "keys/laptop.key_secret"})})`. */
export function loadCurveKeys(files: CurveFiles): CurveClientKeys {
  const pair = typeof files.client === "string" ? loadKeyPair(files.client) : files.client;
  checkKey(pair.publicKey, "client public key");
  checkKey(pair.secretKey, "client secret key");
  return { serverPublicKey: publicKeyFrom(files.server), publicKey: pair.publicKey, secretKey: pair.secretKey };
}

/** Environment variables that `curveFromEnv` reads. */
export const CURVE_ENV = {
  /** The sidecar's public key: a `.key` file or the 40-character key. */
  server: "JAXBRIDGE_CURVE_SERVER_KEY",
  /** This client's `.key_secret` file. */
  client: "JAXBRIDGE_CURVE_CLIENT_KEY",
} as const;

/**
 * CURVE keys from JAXBRIDGE_CURVE_SERVER_KEY and JAXBRIDGE_CURVE_CLIENT_KEY,
 * or undefined when neither is set. One without the other is an error.
 */
export function curveFromEnv(env: Record<string, string | undefined> = process.env): CurveClientKeys | undefined {
  const server = env[CURVE_ENV.server] || undefined;
  const client = env[CURVE_ENV.client] || undefined;
  if (server === undefined && client === undefined) return undefined;
  if (server === undefined || client === undefined) {
    throw new BridgeInputError(`CURVE needs both ${CURVE_ENV.server} (the sidecar's .key file) and ${CURVE_ENV.client} (this client's .key_secret file); only ${server === undefined ? CURVE_ENV.client : CURVE_ENV.server} is set`);
  }
  return loadCurveKeys({ server, client });
}

/**
 * CURVE keys from the command line (`repl --url`, `doctor --url`, the REPL's
 * `.connect`): `--server-key` is the sidecar's public key (the key itself,
 * its `.key` certificate, or a file holding just the key) and `--client-key`
 * this client's `.key_secret` certificate. Neither: undefined; one without
 * the other is an error.
 */
export function curveFromArgs(opts: { serverKey?: string; clientKey?: string }): CurveClientKeys | undefined {
  if (opts.serverKey === undefined && opts.clientKey === undefined) return undefined;
  if (opts.serverKey === undefined || opts.clientKey === undefined) throw new Error("CURVE needs both --server-key (the sidecar's public key) and --client-key (your key pair)");
  return loadCurveKeys({ server: opts.serverKey, client: opts.clientKey });
}

/** A new CURVE key pair (libzmq's, through zeromq.js). */
export function generateKeyPair(): KeyPair {
  const { publicKey, secretKey } = curveKeyPair();
  return { publicKey, secretKey };
}

/** The text of a certificate in the format the sidecar and pyzmq read. */
export function formatCertificate(pair: { publicKey: string; secretKey?: string | undefined }, now = new Date()): string {
  const stamp = now.toISOString().slice(0, 19);
  const banner = pair.secretKey
    ? `#   ****  Generated on ${stamp} by jaxbridge keygen  ****\n#   ZeroMQ CURVE **Secret** Certificate\n#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n`
    : `#   ****  Generated on ${stamp} by jaxbridge keygen  ****\n#   ZeroMQ CURVE Public Certificate\n#   Give this file to the other side: a sidecar lists clients' public keys\n#   in --authorized-keys; a client needs the sidecar's public key.\n\n`;
  return `${banner}metadata\ncurve\n    public-key = "${pair.publicKey}"\n${pair.secretKey ? `    secret-key = "${pair.secretKey}"\n` : ""}`;
}

export interface WrittenKeys {
  publicFile: string;
  secretFile: string;
  publicKey: string;
}

/**
 * Write DIR/NAME.key (0644) and DIR/NAME.key_secret (0600) with a new pair;
 * refuses to replace files unless `force`. Without `force` the files are
 * created exclusively, so a file that appears meanwhile is never overwritten
 * (and a secret file written for a pair whose public half could not be
 * written is removed again).
 */
export function writeKeyPair(dir: string, name: string, opts: { force?: boolean; pair?: KeyPair } = {}): WrittenKeys {
  if (!name || name.includes("/") || name.startsWith(".")) throw new BridgeInputError(`key name ${JSON.stringify(name)}: give a plain file name such as "server" or "laptop"`);
  const pair = opts.pair ?? generateKeyPair();
  const publicFile = join(dir, `${name}.key`);
  const secretFile = join(dir, `${name}.key_secret`);
  const exists = (f: string): BridgeInputError => new BridgeInputError(`${f} exists already; pass force (keygen --force) to replace it (whoever holds the old key will be refused)`);
  if (!opts.force) {
    // Checked first as well, so that neither file is touched when one exists.
    for (const f of [publicFile, secretFile]) if (existsSync(f)) throw exists(f);
  }
  const flag = opts.force ? "w" : "wx";
  const write = (file: string, text: string, mode: number): void => {
    try {
      writeFileSync(file, text, { mode, flag });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") throw exists(file);
      throw e;
    }
    // `mode` applies only when the file is created; a replaced one keeps its own.
    chmodSync(file, mode);
  };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  write(secretFile, formatCertificate(pair), 0o600);
  try {
    write(publicFile, formatCertificate({ publicKey: pair.publicKey }), 0o644);
  } catch (e) {
    rmSync(secretFile, { force: true });
    throw e;
  }
  return { publicFile, secretFile, publicKey: pair.publicKey };
}
