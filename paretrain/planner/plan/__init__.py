"""The plan: candidates and their stages, the plan file, the intervals a user is offered,
replanning the rest of a run, and whether a candidate needs approval.
"""
