"""meta-dist: a distributed, task-parallel meta-learning trainer on Ray and PyTorch."""

__version__ = "0.1.0"
