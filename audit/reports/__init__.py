"""Compliance reports: periods, pluggable sections, the PDF and the signed evidence bundle."""
