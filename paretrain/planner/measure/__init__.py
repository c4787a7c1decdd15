"""What the planner knows from measurement: the Lab protocol and its records, the profile file,
the fits made from it (step time, convergence, gradient noise) and their spread.
"""
