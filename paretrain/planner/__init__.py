"""The planner: pure decisions (spec, offers, profile, models, search, MILP, Pareto, plan).

Never imports torch, mlflow or runtime; deterministic for a given input and seed.
"""
