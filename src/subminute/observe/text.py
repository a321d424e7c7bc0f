"""Text from anywhere (a name or URL written into the table by hand, a server's error text, the lease's
owner) made safe to show on a terminal: :func:`clean` escapes its control characters (``\\x1b``), so that
nothing printed or logged can clear the screen, set the terminal's title or move the cursor."""

from __future__ import annotations

import re

__all__ = ["clean"]

# C0 and C1 controls, DEL, and the invisible format characters that reorder or hide text (bidi overrides
# and isolates, zero-width marks, line and paragraph separators)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: object) -> str:
    """``text`` as a string with every control character escaped: safe to print on a terminal."""
    return _CONTROL.sub(_escape, str(text))
