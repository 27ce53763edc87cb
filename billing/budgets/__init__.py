"""Budgets: their writes (`services`), consumption as Redis counters fed by the usage drain and
reconciled from the records (`counters`), periods and units (`periods`), threshold alerts
(`alerts`), and the blocking rules the gateway caches (`gateway`)."""
