"""A bare ZeroMQ echo in the sidecar process: the benchmark's yardstick for
what the wire costs between these same two processes, with no protocol."""

from __future__ import annotations

import threading

import zmq


def start_echo(endpoint: str) -> threading.Thread:
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)

    def loop() -> None:
        while True:
            try:
                msg = sock.recv_multipart(copy=False)
                sock.send_multipart(msg, copy=False)
            except zmq.ContextTerminated:
                return

    t = threading.Thread(target=loop, name="jaxbridge-echo", daemon=True)
    t.start()
    return t
