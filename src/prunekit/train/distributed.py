"""Data parallelism over several processes with ``torch.distributed``.

Launch any script (or ``prunekit train``) with ``torchrun --nproc_per_node=N``;
the trainer then joins the process group (gloo on CPU, NCCL on CUDA), wraps
the model in ``DistributedDataParallel`` (Li et al., VLDB 2020), gives each rank
its own shard of every epoch's batches and all-reduces the metrics, and only
rank 0 writes files and shows progress.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from prunekit.errors import ConfigError


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (set by ``torchrun``), 1 when unset."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"environment variable WORLD_SIZE must be an integer, got "
                          f"{os.environ.get('WORLD_SIZE')!r}") from None


def wants_distributed(option: bool | None) -> bool:
    """Resolve ``TrainConfig.distributed``: None means 'when launched with WORLD_SIZE > 1'."""
    import torch.distributed as dist

    if option is False:
        return False
    already = dist.is_available() and dist.is_initialized()
    if option is None:
        return already or env_world_size() > 1
    return True


@dataclass
class DistContext:
    """Where this process stands: ``rank``, ``world_size``, ``local_rank``; ``owns_group``
    is True when :func:`setup` created the process group (and :meth:`close` destroys it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def setup(option: bool | None, device_type: str) -> DistContext:
    """Join (or create) the default process group when distributed training is wanted.

    Raises:
        ConfigError: ``distributed=True`` without a launcher's environment.
    """
    if not wants_distributed(option):
        return DistContext()
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("distributed training requested but this torch build has no torch.distributed")
    owns = False
    if not dist.is_initialized():
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ConfigError("distributed=True needs a launcher: run under 'torchrun --nproc_per_node=N ...' "
                              f"(missing environment variables: {', '.join(missing)})")
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, owns_group=owns)


def all_reduce_sum(tensor, ctx: DistContext):
    """Sum ``tensor`` over the ranks in place (a no-op on one process); returns it."""
    if ctx.enabled:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_min_int(value: int, ctx: DistContext, device) -> int:
    """The smallest ``value`` over the ranks."""
    if not ctx.enabled:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def any_rank(flag: bool, ctx: DistContext, device) -> bool:
    """True when ``flag`` is True on at least one rank."""
    if not ctx.enabled:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_buffers(model, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP syncs buffers at the start of each forward, but every rank then updates
    them with its own batch; doing this after an epoch makes evaluation and the
    final weights identical on all ranks.
    """
    if not ctx.enabled:
        return
    import torch.distributed as dist

    for b in model.buffers():
        dist.broadcast(b.data, src=0)


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (a no-op on one process)."""
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def wrap_ddp(model, ctx: DistContext, device):
    """``DistributedDataParallel(model)`` on multi-process runs, else ``model`` itself."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)
