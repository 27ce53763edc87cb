"""Logging filters for the portal's console log."""

import logging


class ClientErrorsWithoutTracebacks(logging.Filter):
    """A refused request (403, 404, 405 …) is one line in the log, not a traceback: the
    exception is how Django signals the answer, not a fault. 5xx keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is not None and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
