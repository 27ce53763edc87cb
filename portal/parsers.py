"""The REST API's body parsers: DRF's own (JSON, form, multipart), refusing text PostgreSQL
can't store.

A `\\u0000` (or an unpaired surrogate) in a free-form field — a version's hyperparameters, a
deployment's extra_args — reached the database and ended in a 500. Refusing it here, where
every body comes in, closes that for every field and every encoding at once.
"""

from __future__ import annotations

from rest_framework import exceptions, parsers

from portal.text import holds_unstorable_text

UNSTORABLE_MESSAGE = ("The body holds a NUL character (\\u0000) or an unpaired surrogate "
                      "(\\ud800–\\udfff), which no field accepts: remove it.")


def _refuse_unstorable(data, *, fields) -> None:
    if holds_unstorable_text(fields(data)):
        raise exceptions.ParseError(UNSTORABLE_MESSAGE)


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _refuse_unstorable(data, fields=lambda d: d)
        return data


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _refuse_unstorable(data, fields=lambda d: dict(d.lists()))
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        _refuse_unstorable(parsed.data, fields=lambda d: dict(d.lists()))
        return parsed
