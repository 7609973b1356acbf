/**
 * The output types of Python calls made from traced code. Tracing is
 * synchronous, but only the sidecar knows what a Python method returns: the
 * first time a call signature is traced, pyCall throws `PyShapesNeeded`;
 * `jit` (and so every top-level utility) catches it, asks the sidecar with
 * `resolvePyShapes` (`pycall_shapes`, `jax.eval_shape` there), which
 * remembers the answer per sidecar, and traces again.
 *
 * Its own module because both sides of that exchange need it: jit.ts
 * resolves, pycall.ts records (and runs a top-level call through jit).
 */

import type { Session } from "../session/session.js";
import type { PyCallRequest, PyCallShapes } from "../wire/ops.js";
import { wireTemplate } from "../wire/protocol.js";
import { traceError } from "./errors.js";

/**
 * Thrown while tracing when a call's output types are not known yet. `jit`
 * answers it with `resolvePyShapes` and traces again; code that traces by
 * hand (`traceFlat`) can do the same.
 */
export class PyShapesNeeded extends Error {
  override name = "PyShapesNeeded";
  constructor(
    /** The sidecar instance whose objects the call names. */
    readonly instance: string,
    readonly request: PyCallRequest,
    readonly key: string,
  ) {
    super(`the output types of ${request.method} on a remote object are not known yet: trace it through jit (or a top-level filterScan / filterCond), which asks the sidecar first`);
  }
}

const shapes = new Map<string, PyCallShapes>();
const SHAPES_LIMIT = 4096;

/** Ask the sidecar for a call's output types and remember them for the next trace. */
export async function resolvePyShapes(host: Session, need: PyShapesNeeded, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<void> {
  if (need.instance !== host.instance) {
    throw traceError(
      `pyCall(${need.request.method})`,
      `the remote object belongs to sidecar ${need.instance || "(closed)"}, but this call runs on sidecar ${host.instance || "(closed)"}; a remote object only exists in the sidecar that made it`,
    );
  }
  const { request } = need;
  const got = await host.request("pycall_shapes", { ...request, target: wireTemplate(request.target), args: request.args.map(wireTemplate) }, opts);
  if (shapes.size >= SHAPES_LIMIT) shapes.delete(shapes.keys().next().value as string);
  shapes.set(need.key, got);
}

/** The output types of the call with this key, if the sidecar told them already. */
export function knownPyShapes(key: string): PyCallShapes | undefined {
  return shapes.get(key);
}
