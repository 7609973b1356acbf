/**
 * Every error the bridge raises. Errors from Python keep the remote type,
 * message and traceback; errors about the caller's input name the pytree
 * path; errors about the connection say how to recover.
 */

export class JaxBridgeError extends Error {
  override name = "JaxBridgeError";
}

/** Bad input caught in TypeScript before anything was sent. */
export class BridgeInputError extends JaxBridgeError {
  override name = "BridgeInputError";
  /** JAX-style key path of the offending leaf, when there is one (`[1]['params'].w`). */
  readonly path: string | undefined;
  constructor(message: string, path?: string) {
    super(path !== undefined && path !== "" ? `at ${path}: ${message}` : message);
    this.path = path;
  }
}

/** An exception raised in the sidecar. */
export class SidecarError extends JaxBridgeError {
  override name = "SidecarError";
  /** The Python exception type, qualified (`ValueError`, `jax.errors.TracerBoolConversionError`). */
  readonly remoteType: string;
  readonly remoteMessage: string;
  /** The Python traceback with the bridge's own frames cut. */
  readonly remoteTraceback: string;
  /** The op that failed (`call`, `put`, ...). */
  readonly op: string | undefined;
  constructor(remote: { type: string; message: string; traceback?: string }, op?: string) {
    super(`${remote.type}: ${remote.message}`);
    this.remoteType = remote.type;
    this.remoteMessage = remote.message;
    this.remoteTraceback = remote.traceback ?? "";
    this.op = op;
    if (this.remoteTraceback) this.stack = `${this.name}: ${this.message}\n  Python traceback (most recent call last):\n${indent(this.remoteTraceback)}\n${this.stack?.split("\n").slice(1).join("\n") ?? ""}`;
  }
}

/** The sidecar went away: the call cannot complete. Reconnect with `connect()`. */
export class SidecarDiedError extends JaxBridgeError {
  override name = "SidecarDiedError";
  readonly code = "ESIDECARDIED";
  readonly address: string | undefined;
  constructor(message: string, address?: string) {
    super(message);
    this.address = address;
  }
}

// --- rel (issue 13): sessions, keys, restarts ---------------------------------

/** The call was in flight when its session was closed with `close()`: nothing died, it will not complete. */
export class SessionClosedError extends JaxBridgeError {
  override name = "SessionClosedError";
  readonly code = "ESESSIONCLOSED";
}

/** The sidecar refused this client's CURVE keys (or this client has the wrong key for the sidecar). */
export class AuthError extends JaxBridgeError {
  override name = "AuthError";
  readonly code = "EAUTH";
  readonly address: string | undefined;
  constructor(message: string, address?: string) {
    super(message);
    this.address = address;
  }
}

/**
 * The sidecar was restarted (by `jaxbridge serve`'s supervisor, after a crash
 * or a run past `--max-run-seconds`): its arrays and objects are gone, so
 * this session is over. `cause` says why the old one ended, when known.
 */
export class SidecarRestartedError extends SidecarDiedError {
  override name = "SidecarRestartedError";
  /** Why the old sidecar ended, when known (`request 12 (run) of session ab12 ran past --max-run-seconds=30`). */
  readonly reason: string | undefined;
  /** The instance this session was connected to, and the one now serving (if known). */
  readonly previousInstance: string | undefined;
  readonly instance: string | undefined;
  constructor(message: string, opts: { address?: string; reason?: string; previousInstance?: string; instance?: string } = {}) {
    super(message, opts.address);
    this.reason = opts.reason;
    this.previousInstance = opts.previousInstance;
    this.instance = opts.instance;
  }
}

// --- end rel ----------------------------------------------------------------------

/** The wire carried something this side cannot decode. */
export class ProtocolError extends JaxBridgeError {
  override name = "ProtocolError";
}

/** A call passed its deadline. The sidecar may still finish it; the result is dropped and freed. */
export class DeadlineError extends JaxBridgeError {
  override name = "DeadlineError";
  readonly code = "ETIMEDOUT";
}

/** A call was abandoned through its AbortSignal. */
export class AbortedError extends JaxBridgeError {
  override name = "AbortError";
  readonly code = "ABORT_ERR";
}

function indent(s: string): string {
  return s
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}
