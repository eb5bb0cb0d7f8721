"""Streaming shards into PyTorch: the epoch plan, the records of a data set, the IterableDataset
and the Lightning data module."""
