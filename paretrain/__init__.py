"""paretrain: plan and run model training under a money budget (the command line)."""
