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

/** One exception behind a remote one (its `__cause__`, or its `__context__`), as the sidecar reports it. */
export interface RemoteCause {
  /** The Python exception type, qualified as `remoteType` is. */
  readonly type: string;
  readonly message: string;
}

// --- SidecarError: the exception chain and the message caps (sem) ---------------------------

/** How much of the remote message `error.message` shows; `remoteMessage` keeps all of it. */
export const MESSAGE_CAP = 2000;
/** How much of the innermost cause's first line `error.message` shows; `causes` keeps all of it. */
export const CAUSE_LINE_CAP = 300;

function capMessage(text: string): string {
  if (text.length <= MESSAGE_CAP) return text;
  return `${text.slice(0, MESSAGE_CAP)} [... ${text.length - MESSAGE_CAP} more characters: error.remoteMessage has all ${text.length}]`;
}

function causeLine(c: RemoteCause): string {
  const first = c.message.split("\n", 1)[0]!;
  const line = first.length > CAUSE_LINE_CAP ? first.slice(0, CAUSE_LINE_CAP) : first;
  return line.length < c.message.length ? `${c.type}: ${line} [...: error.causes has all of it]` : `${c.type}: ${line}`;
}

/**
 * An exception raised in the sidecar. `message` is short: the remote type
 * and message (cut after MESSAGE_CAP characters) and, when Python raised it
 * from or while handling another exception, the innermost cause in one line
 * (`caused by ValueError: EOF: reading array data, ...`). The full text is on
 * the error: `remoteMessage`, `remoteTraceback` and `causes`.
 */
export class SidecarError extends JaxBridgeError {
  override name = "SidecarError";
  /** The Python exception type, qualified (`ValueError`, `jax.errors.TracerBoolConversionError`). */
  readonly remoteType: string;
  /** The Python exception's message, whole (the sidecar cuts only past 16384 characters, saying so). */
  readonly remoteMessage: string;
  /** The Python traceback with the bridge's own frames cut. */
  readonly remoteTraceback: string;
  /**
   * The exceptions behind this one, outermost first, as Python prints them:
   * each one's `__cause__`, or its `__context__` unless `raise ... from None`
   * hid it. The last is the root cause. Empty when there was none.
   */
  readonly causes: readonly RemoteCause[];
  /** The op that failed (`call`, `put`, ...). */
  readonly op: string | undefined;
  constructor(remote: { type: string; message: string; traceback?: string; causes?: readonly RemoteCause[] }, op?: string) {
    const causes = remote.causes ?? [];
    const inner = causes[causes.length - 1];
    super(`${remote.type}: ${capMessage(remote.message)}${inner ? `\n  caused by ${causeLine(inner)}` : ""}`);
    this.remoteType = remote.type;
    this.remoteMessage = remote.message;
    this.remoteTraceback = remote.traceback ?? "";
    this.causes = causes;
    this.op = op;
    const chain = causes.length ? `\n  Python exception chain (outermost first):\n${causes.map((c) => `    ${causeLine(c)}`).join("\n")}` : "";
    const tb = this.remoteTraceback ? `\n  Python traceback (most recent call last):\n${indent(this.remoteTraceback)}` : "";
    // The JS frames follow the header (whose message may span lines).
    const frames = (this.stack ?? "").split("\n").filter((l) => /^\s+at /.test(l));
    if (tb || chain) this.stack = `${this.name}: ${this.message}${tb}${chain}\n${frames.join("\n")}`;
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

// --- sessions, keys, restarts (issue 13) -----------------------------------------

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
