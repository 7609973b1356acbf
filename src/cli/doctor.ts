/**
 * `jaxbridge doctor`: what is installed on this side (Node, zeromq), what the
 * sidecar's Python reports (`python -m jaxbridge_sidecar doctor`), and what a
 * real handshake with a sidecar says (embedded, or `--url`).
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { findSidecarPython, PACKAGE_ROOT, type SidecarPython } from "../wire/python-env.js";
import { PROTOCOL_VERSION } from "../wire/protocol.js";
import { connect, type SidecarInfo } from "../session/session.js";
import { type CurveClientKeys, libzmqVersion } from "../wire/transport.js";

export interface DoctorOptions {
  url?: string;
  curve?: CurveClientKeys;
  x64?: boolean;
}

export interface DoctorReport {
  ok: boolean;
  problems: string[];
  node: { version: string; platform: string; arch: string };
  jaxbridge: { version: string; protocol: number };
  zeromq: { version: string; libzmq: string };
  /** Which Python an embedded sidecar runs, and the rule that found it (embedded only). */
  environment?: SidecarPython;
  /** `python -m jaxbridge_sidecar doctor` (embedded only). */
  python?: Record<string, unknown>;
  /** What the handshake reported, with timings. */
  sidecar?: Omit<SidecarInfo, "instance"> & { url: string; embedded: boolean; handshakeMs: number; roundTripUs: number };
}

/** This package's version, from its package.json (`jaxbridge --version`, doctor). */
export function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

function zeromqVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    return (JSON.parse(readFileSync(require.resolve("zeromq/package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

export async function doctor(opts: DoctorOptions = {}): Promise<DoctorReport> {
  const problems: string[] = [];
  const report: DoctorReport = {
    ok: false,
    problems,
    node: { version: process.version, platform: process.platform, arch: process.arch },
    jaxbridge: { version: packageVersion(), protocol: PROTOCOL_VERSION },
    zeromq: { version: zeromqVersion(), libzmq: libzmqVersion },
  };
  if (opts.url === undefined) {
    try {
      const args = ["-m", "jaxbridge_sidecar", "doctor", ...(opts.x64 === false ? ["--no-x64"] : [])];
      report.environment = findSidecarPython();
      const r = spawnSync(report.environment.python, args, { encoding: "utf8", timeout: 120_000 });
      if (r.status !== 0) problems.push(`python doctor failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
      else report.python = JSON.parse(r.stdout) as Record<string, unknown>;
      if (report.python && report.python.protocol !== PROTOCOL_VERSION) problems.push(`the sidecar package speaks protocol ${String(report.python.protocol)}, this client ${PROTOCOL_VERSION}`);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  const t0 = performance.now();
  try {
    const jb = await connect({ ...(opts.url ? { url: opts.url } : {}), ...(opts.curve ? { curve: opts.curve } : {}), ...(opts.x64 === false ? { x64: false } : {}), handshakeTimeoutMs: 20_000 });
    try {
      const handshakeMs = performance.now() - t0;
      const times: number[] = [];
      for (let i = 0; i < 21; i++) {
        const t = performance.now();
        await jb.ping();
        times.push(performance.now() - t);
      }
      times.sort((a, b) => a - b);
      const { instance: _instance, ...info } = jb.info;
      report.sidecar = { ...info, url: jb.url, embedded: jb.sidecar !== undefined, handshakeMs: Math.round(handshakeMs), roundTripUs: Math.round(times[10]! * 1000) };
    } finally {
      await jb.close();
    }
  } catch (e) {
    problems.push(`no handshake with ${opts.url ?? "an embedded sidecar"}: ${(e as Error).message}`);
  }
  report.ok = problems.length === 0;
  return report;
}

export function formatDoctor(r: DoctorReport): string {
  const rows: [string, string][] = [
    ["node", `${r.node.version} (${r.node.platform} ${r.node.arch})`],
    ["jaxbridge", `${r.jaxbridge.version}, protocol ${r.jaxbridge.protocol}`],
    ["zeromq", `${r.zeromq.version} (libzmq ${r.zeromq.libzmq})`],
  ];
  if (r.environment) rows.push(["environment", `${r.environment.python} (${r.environment.source})`]);
  const py = r.python;
  if (py) {
    rows.push(["python", `${String(py.python)} (${String(py.executable)})`]);
    rows.push(["packages", `jax ${String(py.jax)}, numpy ${String(py.numpy)}, pyzmq ${String(py.pyzmq)} (libzmq ${String(py.libzmq)})`]);
  }
  const s = r.sidecar;
  const out = ["jaxbridge doctor", ...rows.map(([k, v]) => `  ${k.padEnd(11)} ${v}`)];
  if (s) {
    out.push(`sidecar (${s.embedded ? "embedded" : s.url}, pid ${s.pid}, handshake in ${(s.handshakeMs / 1000).toFixed(1)} s)`);
    const sideRows: [string, string][] = [
      ["protocol", String(s.protocol)],
      ["python", s.python],
      ["jax", `${s.jax} (jaxlib ${s.jaxlib})`],
      ["backend", s.backend],
      ["devices", s.devices.map((d) => `${d.str} (${d.kind})`).join(", ")],
      ["x64", s.x64 ? "on" : "off"],
      ["round trip", `${s.roundTripUs} µs (median of 21 pings)`],
    ];
    out.push(...sideRows.map(([k, v]) => `  ${k.padEnd(11)} ${v}`));
  }
  out.push(r.ok ? "ok" : `problems:\n${r.problems.map((p) => `  - ${p}`).join("\n")}`);
  return `${out.join("\n")}\n`;
}
