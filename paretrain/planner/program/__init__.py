"""The planning problem as arrays, the cost of one stage, the mixed-integer program and the
exact Pareto fronts it is checked against.
"""
