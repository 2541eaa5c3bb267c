"""Trajectory data: the `Trajectories` container, user tables with units, and the built-in systems."""
