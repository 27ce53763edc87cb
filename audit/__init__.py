"""The tamper-evident audit trail. Every state change of every app calls `audit.record`."""


def record(**kwargs):
    """Append one event to the hash chain, inside the caller's transaction.

    See `audit.services.record_event` for the arguments; this indirection keeps
    `import audit` cheap and safe before the app registry is ready.
    """
    from audit.services import record_event

    return record_event(**kwargs)
