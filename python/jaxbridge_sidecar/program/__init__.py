"""Programs traced in TypeScript, turned back into `jax.lax` calls.

A Program (see `src/trace/README.md`) is data: canonical JSON naming
primitives, their parameters and typed variables. Read in this order:

- `ir.py`: the decoded form (avals, literals, equations, sub-programs);
- `rules.py`: the primitive table, each primitive's parameter kinds and its
  lax rule (cond, scan and while evaluate their sub-programs through the
  rule context);
- `decode.py`: JSON to `ir`, checked completely before anything runs;
- `evaluate.py`: `ir` interpreted with the rules, one equation at a time;
- `lower.py`: a decoded program as a `jax.jit` function, with the checks a
  run makes first (a program with callbacks takes its run's token as an
  operand: see events.py at the package top);
- `cache.py`: lowered programs by the hash of their bytes, as `run` finds them;
- `pycall.py`: the `pycall` primitive's templates, which name remote Python
  objects by the ids the sidecar handed out.
"""

from .decode import decode_literal, decode_program, program_hash
from .lower import Lowered, lower
from .rules import RULES

__all__ = ["RULES", "Lowered", "decode_literal", "decode_program", "lower", "program_hash"]
