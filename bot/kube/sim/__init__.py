"""A simulated Kubernetes API server for tests, benchmarks and the demo (`SimCluster`), with object builders."""

from bot.kube.sim.server import SimCluster

__all__ = ["SimCluster"]
