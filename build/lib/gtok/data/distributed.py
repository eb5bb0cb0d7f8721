"""Which rank of how many this process is, for the data: given explicitly, else torch.distributed's.

Asked again at every `len()` and `iter()`, because Lightning initialises the process group after
the data sets are built; a DataLoader worker (a spawned process without a process group) gets the
answer in its pickled copy of the data set.
"""

from __future__ import annotations


def world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world_size): the explicit values when given, else the initialised process group's,
    else (0, 1)."""
    if rank is not None or world_size is not None:
        rank, world_size = rank or 0, world_size or 1
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        return rank, world_size
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
