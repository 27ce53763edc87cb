"""Statements: a month's lines computed from the usage records (`selectors`), closed months
stored for good (`services`), downloads as CSV and PDF (`exports`)."""
