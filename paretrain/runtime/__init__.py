"""The runtime: torch, clocks, money and files. Imports the planner, never the reverse."""
