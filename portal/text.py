"""Names people type are shown to other people exactly as typed, so they must be plain text.

`validate_display_name` rejects the characters that change how *surrounding* text is shown or
that can't be seen at all:

* the bidirectional controls — embeddings and overrides U+202A–U+202E, isolates U+2066–U+2069,
  the marks U+200E/U+200F and the Arabic letter mark U+061C — with which "CI \u202eevil\u202c"
  is displayed as "CI live";
* control characters (C0, DEL, C1: tabs, newlines, escape sequences) and the line/paragraph
  separators U+2028/U+2029: a name is a single line;
* every other invisible format character (zero-width space U+200B, word joiner U+2060, BOM
  U+FEFF, soft hyphen, the Unicode "tag" characters used to smuggle hidden text, …) and lone
  surrogates, which the database can't store anyway.

Deliberately allowed: the zero-width non-joiner and joiner U+200C/U+200D. Persian and Indic
scripts need them to spell words correctly, and emoji sequences use the joiner; they don't
reorder anything.
"""
from __future__ import annotations

import re
import unicodedata

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

BIDI_CONTROLS = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u200e", "\u200f", "\u061c"])
ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})  # ZWNJ, ZWJ: needed by scripts and emoji
REJECTED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def disallowed_character(value: str) -> str | None:
    """The first character a display name must not contain, or None."""
    for char in value:
        if char in ALLOWED_FORMAT:
            continue
        if char in BIDI_CONTROLS or unicodedata.category(char) in REJECTED_CATEGORIES:
            return char
    return None


def _message(char: str) -> str:
    code = f"U+{ord(char):04X}"
    if char in BIDI_CONTROLS:
        return (f"Remove the invisible text-direction character ({code}) — names are shown "
                "exactly as typed.")
    category = unicodedata.category(char)
    if category in ("Cc", "Zl", "Zp"):
        return (f"Remove the control character ({code}) — a name is a single line of "
                "visible text.")
    return f"Remove the invisible character ({code}) — names are shown exactly as typed."


@deconstructible
class DisplayNameValidator:
    """Model/form/serializer validator for a single-line, human-entered name or label."""

    code = "invisible_character"

    def __call__(self, value) -> None:
        if not isinstance(value, str):
            return
        char = disallowed_character(value)
        if char is not None:
            raise ValidationError(_message(char), code=self.code, params={"value": value})

    def __eq__(self, other) -> bool:
        return isinstance(other, DisplayNameValidator)

    def __hash__(self) -> int:
        return hash(self.code)


validate_display_name = DisplayNameValidator()


# --- Secrets the portal sends in HTTP headers ----------------------------------------------

HEADER_TOKEN_CHARACTERS = frozenset(chr(c) for c in range(0x21, 0x7F))


def validate_header_token(value) -> None:
    """A credential the portal sends as `Authorization: Bearer <value>` (an upstream's API key,
    a cluster token) must be visible ASCII without spaces: HTTP clients encode headers as
    Latin-1 and refuse line breaks, so anything else would fail at every call instead of
    once, here, with a message."""
    if not isinstance(value, str) or not value:
        return
    for position, char in enumerate(value, start=1):
        if char not in HEADER_TOKEN_CHARACTERS:
            shown = f"U+{ord(char):04X}" if not char.isprintable() or char.isspace() else (
                f"“{char}” (U+{ord(char):04X})")
            raise ValidationError(
                f"Character {position} is {shown}: an API key or token can hold only visible "
                "ASCII characters (letters, digits and punctuation, no spaces). Paste the key "
                "exactly as its issuer shows it.", code="not_a_header_token")


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def holds_unstorable_text(value) -> bool:
    """Whether decoded JSON holds, in any key or string, a NUL character or an unpaired
    surrogate: PostgreSQL stores neither (text, jsonb), so such input must be refused before
    it is saved, not end in a 500."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(holds_unstorable_text(key) or holds_unstorable_text(item)
                   for key, item in value.items())
    if isinstance(value, list):
        return any(holds_unstorable_text(item) for item in value)
    return False
