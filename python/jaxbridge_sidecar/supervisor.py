"""`serve`'s supervisor: runs the sidecar in a child process and starts a
fresh one when it crashes or gives up on a hung run (`--max-run-seconds`).

XLA cannot interrupt a computation, so a hung run ends the whole process;
the supervisor is what turns that into a restart. It tells the new sidecar
which instance it replaces and why that one ended; the new sidecar reports
both in its handshake (`restarted`), so a client that reconnects learns the
cause (`SidecarRestartedError` in TypeScript). A restart keeps the bound
endpoint (a `tcp://HOST:*` bind keeps the port the first child got). The
supervisor imports neither JAX nor the server: it is small and starts at
once, and it needs nothing but Python (the Docker image has no Node)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

# The child's exit status for a configuration it refused (cli._fail): not worth a restart.
EXIT_CONFIG = 2
# A child that ran at least this long before it ended restarts at once; quicker deaths back off.
STABLE_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 30.0

_READY = re.compile(r"JAXBRIDGE READY (\S+)(?: instance=(\w+))?")
_EXIT = re.compile(r"JAXBRIDGE EXIT (.+)")


def _say(message: str) -> None:
    print(f"jaxbridge-sidecar: supervisor: {message}", file=sys.stderr, flush=True)


def _replace_endpoint(args: list[str], endpoint: str) -> list[str]:
    out = list(args)
    for i, a in enumerate(out):
        if a == "--endpoint" and i + 1 < len(out):
            out[i + 1] = endpoint
            return out
        if a.startswith("--endpoint="):
            out[i] = f"--endpoint={endpoint}"
            return out
    return [*out, "--endpoint", endpoint]


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    def __init__(self, serve_args: list[str]):
        self.serve_args = serve_args
        self.child: subprocess.Popen[str] | None = None
        self.stopping = False
        self.restarts = 0

    def _forward(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGINT, self._forward)
        endpoint: str | None = None
        previous: str | None = None
        cause: str | None = None
        quick_deaths = 0
        while True:
            args = self.serve_args if endpoint is None else _replace_endpoint(self.serve_args, endpoint)
            cmd = [sys.executable, "-m", "jaxbridge_sidecar", "serve", "--no-supervisor", "--supervised-by", str(os.getpid()), *args]
            if previous is not None:
                cmd += ["--previous-instance", previous, "--restart-cause", cause or "unknown"]
            started = time.monotonic()
            state: dict[str, str | None] = {"instance": None, "exit": None, "endpoint": None}
            self.child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
            reader = threading.Thread(target=self._relay, args=(self.child, state), daemon=True)
            reader.start()
            code = self._wait(self.child)
            reader.join(2)
            if self.stopping:
                return 0
            if state["endpoint"] is None and code == EXIT_CONFIG:
                return code  # it refused its configuration: the message is on stderr
            if state["endpoint"] is not None:
                endpoint = state["endpoint"]
            if code == 0:
                return 0
            how = state["exit"] or f"the sidecar {describe_exit(code)}"
            previous = state["instance"] or previous
            cause = how
            lived = time.monotonic() - started
            quick_deaths = 0 if lived >= STABLE_SECONDS else quick_deaths + 1
            delay = 0.0 if quick_deaths == 0 else min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (quick_deaths - 1))
            self.restarts += 1
            _say(f"{how} (instance {state['instance'] or '?'}, after {lived:.0f} s); restart #{self.restarts}" + (f" in {delay:g} s" if delay else ""))
            if delay:
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline and not self.stopping:
                    time.sleep(0.1)
                if self.stopping:
                    return 0

    def _wait(self, child: subprocess.Popen[str]) -> int:
        while True:
            try:
                return child.wait()
            except InterruptedError:
                continue

    @staticmethod
    def _relay(child: subprocess.Popen[str], state: dict[str, str | None]) -> None:
        """Pass the child's stdout through, and read its READY and EXIT lines."""
        assert child.stdout is not None
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            m = _READY.search(line)
            if m:
                state["endpoint"], state["instance"] = m.group(1), m.group(2)
            m = _EXIT.search(line)
            if m:
                state["exit"] = f"the sidecar gave up: {m.group(1).strip()}"


def supervise(serve_args: list[str]) -> int:
    return Supervisor(serve_args).run()
