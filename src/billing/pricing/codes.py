"""Promo-code strings: generation, normalisation and validation.

Codes are matched case-insensitively: they are stored upper-cased (and the database has a
unique index on ``upper(code)``), so every code is passed through :func:`normalize_code`
before it is stored or looked up.
"""

from __future__ import annotations

import re
import secrets
import string

_AMBIGUOUS = frozenset("0O1IL")
#: Characters of generated codes: no 0/O, 1/I/L, which people misread when typing a code in.
PROMO_ALPHABET = "".join(c for c in string.ascii_uppercase + string.digits if c not in _AMBIGUOUS)

MIN_CODE_LENGTH = 3
MAX_CODE_LENGTH = 32
_CODE_RE = re.compile(rf"[A-Z0-9_-]{{{MIN_CODE_LENGTH},{MAX_CODE_LENGTH}}}")


def normalize_code(code: str) -> str:
    """The stored form of a code: surrounding whitespace removed, upper-cased."""
    return code.strip().upper()


def is_valid_code(code: str) -> bool:
    """Whether a user-given code is acceptable: 3..32 of ``A-Z 0-9 - _`` after normalising.

    Non-ASCII input is refused before upper-casing, which would otherwise turn ``ß`` into
    ``SS`` or ``ı`` into ``I`` and let look-alike spellings match a code.
    """
    normalized = normalize_code(code)
    return code.isascii() and _CODE_RE.fullmatch(normalized) is not None


def generate_code(length: int = 10, prefix: str = "") -> str:
    """A new random code: ``prefix`` (normalised) followed by ``length`` random characters.

    Uses :mod:`secrets` because a guessable code is a free discount. 31**10 ≈ 8e14 codes,
    so collisions are negligible; the unique index catches the rest.
    """
    if length < 1:
        raise ValueError(f"length must be at least 1, got {length}")
    code = normalize_code(prefix) + "".join(secrets.choice(PROMO_ALPHABET) for _ in range(length))
    if not is_valid_code(code):
        raise ValueError(
            f"prefix {prefix!r} with {length} characters does not make a valid code "
            f"({MIN_CODE_LENGTH}..{MAX_CODE_LENGTH} of A-Z, 0-9, '-', '_')"
        )
    return code
