"""events.py: callback events reach the run whose token the program was
called with, from XLA's threads, with no global in between."""

from __future__ import annotations

import threading

import jax
import numpy as np

from jaxbridge_sidecar.events import NO_RUN, RunTable
from jaxbridge_sidecar.program import lower

from test_callbacks import scan_program


def _events(posted: list) -> list:
    return [[np.asarray(a).tolist() for a in arrays] for item in posted if item[0] == "events" for _, arrays in item[3]]


def test_each_run_gets_the_events_of_its_own_call_even_when_runs_overlap():
    runs = RunTable()
    entry = lower(scan_program(50), runs=runs)
    posted: dict[str, list] = {"a": [], "b": []}
    a = runs.open(1, b"a", posted["a"].append)
    b = runs.open(2, b"b", posted["b"].append)
    assert a.token != b.token and NO_RUN not in (a.token, b.token)

    def go(run, start):
        entry([np.float32(start)], run.token)
        jax.effects_barrier()
        run.finish()

    threads = [threading.Thread(target=go, args=(a, 0.0)), threading.Thread(target=go, args=(b, 100.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert _events(posted["a"]) == [[0.0 + k, 2 * (0.0 + k)] for k in range(50)]
    assert _events(posted["b"]) == [[100.0 + k, 2 * (100.0 + k)] for k in range(50)]
    assert entry.traces == 1, "a new run token must not retrace the program"
    assert runs.find(1) is a and runs.find(2) is b
    runs.close(a)
    assert runs.find(1) is None and list(runs) == [b]


def test_events_of_no_run_or_a_closed_run_are_dropped():
    runs = RunTable()
    entry = lower(scan_program(3), runs=runs)
    posted: list = []
    run = runs.open(5, b"x", posted.append)
    runs.close(run)
    out = entry([np.float32(1.0)], run.token)
    entry([np.float32(1.0)])  # NO_RUN
    jax.effects_barrier()
    run.finish()
    assert float(out[0]) == 4.0 and posted == [] and run.events == 0
