"""Adapting a run as it goes: the drift detector, the pure policy and the adaptation that turns a
run's snapshot into a change for the executor to apply.
"""
