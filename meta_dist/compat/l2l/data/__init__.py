"""learn2learn.data: MetaDataset bookkeeping, Taskset (TaskDataset) and the task transforms.

Tasks are seeded per task, never from the global `random` (see `task_dataset`).
"""
from meta_dist.compat.l2l.data import transforms
from meta_dist.compat.l2l.data.meta_dataset import FilteredMetaDataset, MetaDataset, UnionMetaDataset
from meta_dist.compat.l2l.data.task_dataset import TaskDataset, Taskset, partition_task
from meta_dist.compat.l2l.data.transforms import DataDescription

__all__ = ["DataDescription", "FilteredMetaDataset", "MetaDataset", "TaskDataset", "Taskset", "UnionMetaDataset",
           "partition_task", "transforms"]
