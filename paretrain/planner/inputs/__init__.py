"""What the user gives the planner: the spec and its field rules, the search space, the
target metric's direction, and the hardware offers (local devices and the price catalog).
"""
