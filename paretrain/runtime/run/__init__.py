"""One run of a plan's candidate: the executor that owns its state and applies what changes in
it (``changes``), the guard before each step, the stages and the adaptive side's decisions,
recovery (resume, preemption, rollback) and the report at its end.
"""
