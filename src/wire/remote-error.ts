/**
 * The `error` map of a reply, read: the mirror of the sidecar's
 * `remote_errors.py`. docs/protocol.md ("Error replies") is the authority:
 * `{type, message, traceback, causes}`, `causes` a list of `{type, message}`,
 * outermost first. A map that does not follow it is the wire's fault, not
 * Python's, and becomes a ProtocolError naming what was wrong.
 */

import { ProtocolError, type RemoteCause, SidecarError } from "../values/errors.js";

const isText = (x: unknown): x is string => typeof x === "string";

function malformed(op: string, why: string, body: unknown): ProtocolError {
  let shown: string;
  try {
    shown = JSON.stringify(body) ?? String(body);
  } catch {
    shown = String(body);
  }
  if (shown.length > 300) shown = `${shown.slice(0, 300)} [... ${shown.length - 300} more characters]`;
  return new ProtocolError(`malformed error reply to ${op}: ${why}: ${shown}`);
}

/** The SidecarError an error reply describes, or a ProtocolError when its `error` map is malformed. */
export function remoteError(body: unknown, op: string): SidecarError | ProtocolError {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return malformed(op, "`error` is not a map", body);
  const e = body as { type?: unknown; message?: unknown; traceback?: unknown; causes?: unknown };
  if (!isText(e.type)) return malformed(op, "`error.type` is not a string", body);
  if (e.message !== undefined && !isText(e.message)) return malformed(op, "`error.message` is not a string", body);
  if (e.traceback !== undefined && !isText(e.traceback)) return malformed(op, "`error.traceback` is not a string", body);
  // A sidecar older than the exception chain sends no `causes`: read as none.
  const raw = e.causes ?? [];
  if (!Array.isArray(raw)) return malformed(op, "`error.causes` is not a list", body);
  const causes: RemoteCause[] = [];
  for (const c of raw as unknown[]) {
    const cause = c as { type?: unknown; message?: unknown } | null;
    if (typeof cause !== "object" || cause === null || !isText(cause.type) || !isText(cause.message)) return malformed(op, "an entry of `error.causes` is not {type, message}", body);
    causes.push({ type: cause.type, message: cause.message });
  }
  return new SidecarError({ type: e.type, message: e.message ?? "", traceback: e.traceback ?? "", causes }, op);
}
