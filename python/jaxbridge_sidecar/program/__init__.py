"""Programs traced in TypeScript, checked and lowered to `jax.jit` functions."""

from .lower import Lowered, decode_program, lower, program_hash

__all__ = ["Lowered", "decode_program", "lower", "program_hash"]
