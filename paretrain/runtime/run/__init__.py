"""One run of a plan's candidate: the executor that owns its state, the guard before each step,
recovery (resume, preemption, rollback) and the report at its end.
"""
