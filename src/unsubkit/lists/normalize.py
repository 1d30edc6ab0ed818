"""A fast path for :func:`unsubkit.address.normalize` on plain ASCII addresses.

email-validator costs ~20 µs an address; a million-row list needs better. For strings matching
:data:`FAST_PATTERN` (and at most :data:`FAST_MAX_LEN` characters) the result is provably the
same as the full validator's, and is simply ``s.lower()``:

- local part: an RFC 5322 dot-atom of ASCII ``atext`` — email-validator's ``DOT_ATOM_TEXT``
  accepts exactly this and returns it unchanged (quoted strings, display names and non-ASCII
  never match the pattern);
- domain: at least two labels of ASCII letters and digits with single inner hyphens, ending with
  a letter — ``uts46_remap`` only lowercases such a domain, the hostname regex accepts it, no
  label can be an R-LDH or Punycode ``xn--`` label (no ``--`` at all), and it is not under a
  special-use name (``arpa``, ``test``, ... taken from email-validator itself);
- length: 64 characters bound the address (254) and every label (63) far inside the limits;
- normalization: :func:`~unsubkit.address.normalize` case-folds the local part and lowercases
  the ASCII domain; for ASCII text ``casefold() == lower()``.

Everything else — including every invalid address — goes through email-validator, so errors
are the validator's own. ``tests/test_filter.py`` checks the equivalence with hypothesis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from email_validator import SPECIAL_USE_DOMAIN_NAMES

from ..address import normalize

__all__ = ["FAST_MAX_LEN", "FAST_PATTERN", "all_fast", "fast_key", "normalize_fast"]

FAST_MAX_LEN = 64

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
# Possessive quantifiers: the character classes never overlap their separators, so there is
# nothing to backtrack into (same language, less work).
_LABEL = r"[A-Za-z0-9]++(?:-[A-Za-z0-9]++)*+"
_SHAPE = rf"[{_ATEXT}]++(?:\.[{_ATEXT}]++)*+@{_LABEL}(?:\.{_LABEL})++(?<=[A-Za-z])"
_SPECIAL = tuple(sorted(name.lower() for name in SPECIAL_USE_DOMAIN_NAMES))
# A lookbehind per special-use name: the domain must not be that name or end with ".name".
_NOT_SPECIAL = "".join(rf"(?<![.@](?i:{re.escape(name)}))" for name in _SPECIAL)
FAST_PATTERN = re.compile(_SHAPE + _NOT_SPECIAL)
_fullmatch = FAST_PATTERN.fullmatch
# For a batch whose lowercased text is at hand: the shape per value, and the special-use names
# found by one search over the text (a value's domain ends with ".test" exactly when the
# lowercased text has ".test" before a newline or at its very end; a domain that *is* a
# special name has no dot and fails the shape anyway). The literal "." prefix lets the regex
# engine skip ahead at C speed.
_shape_match = re.compile(_SHAPE).fullmatch
_special_end = re.compile(
    rf"\.(?:{'|'.join(re.escape(name) for name in _SPECIAL)})(?:\n|\Z)"
).search


def fast_key(stripped: str) -> str | None:
    """The normalized form of an already stripped string, or ``None`` off the fast path."""
    if len(stripped) <= FAST_MAX_LEN and _fullmatch(stripped) is not None:
        return stripped.lower()
    return None


def all_fast(values: Sequence[str], lowered: str | None = None) -> bool:
    """True when every value is on the fast path as it stands (no surrounding whitespace).

    Runs the regex from C over the whole batch (``map``), without a Python-level loop.
    ``lowered``, when given, must be ``"\\n".join(values).lower()``.
    """
    if not values:
        return True
    if max(map(len, values)) > FAST_MAX_LEN:
        return False
    if lowered is None:
        return all(map(_fullmatch, values))
    return _special_end(lowered) is None and all(map(_shape_match, values))


def normalize_fast(address: str) -> str:
    """Same result (or the same :class:`~unsubkit.errors.AddressError`) as ``normalize``."""
    key = fast_key(address.strip())
    return key if key is not None else normalize(address)
