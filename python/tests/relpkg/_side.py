"""Private: importing it is a side effect the allow-list must prevent."""

from . import IMPORTED

IMPORTED.append(__name__)
