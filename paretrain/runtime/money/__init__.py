"""Money: the append-only ledger (the source of truth), prices (catalog, trace, scripted events),
the meter that charges time as it passes, the budget reserve, and spend reports.
"""
