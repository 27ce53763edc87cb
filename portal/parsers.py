"""The REST API's one body parser: JSON without text PostgreSQL can't store.

A `\\u0000` (or an unpaired surrogate) in a free-form field — a version's hyperparameters, a
deployment's extra_args — reached the database and ended in a 500. Refusing it here, where
every body comes in, closes that for every field at once.
"""

from __future__ import annotations

from rest_framework import exceptions, parsers

from portal.text import holds_unstorable_text

UNSTORABLE_MESSAGE = ("The body holds a NUL character (\\u0000) or an unpaired surrogate "
                      "(\\ud800–\\udfff), which no field accepts: remove it.")


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if holds_unstorable_text(data):
            raise exceptions.ParseError(UNSTORABLE_MESSAGE)
        return data
