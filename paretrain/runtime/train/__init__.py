"""Training on real devices: the trainer loop, the TorchLab that measures for the planner,
devices, checkpoints, data-parallel stages under torch's elastic launcher, and the workloads.
"""
