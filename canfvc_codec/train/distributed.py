"""Data-parallel training over several processes: one *rank* per device, started by ``torchrun``.

Every rank holds a full copy of the model and the optimisers and trains on its own batches;
after the backward passes of a step, the gradients are averaged over the ranks (one all-reduce
per bucket), so that every rank takes the same optimiser step and the replicas stay equal. A
step of N ranks with batches of B is therefore one step on a global batch of N x B at the
phase's learning rate, as with PyTorch's DistributedDataParallel.

The averaging is done here rather than by wrapping the model in ``DistributedDataParallel``
because a training step does not fit that wrapper: it runs one backward pass per coded frame,
calls the model's sub-networks directly (SPyNet, the extrapolation network, the intra coder),
and each phase changes which parameters train. The wrapper expects one forward pass through
itself per backward pass and a set of trainable parameters fixed when it is built. A step's
gradients are complete only after its last backward pass anyway, which is where they are
averaged.

Everything that decides *when* something happens (stop, checkpoint, the training seconds that
move a plan given in minutes) is agreed on by all ranks, so that they run the same number of
steps and switch phases at the same step: a rank that left the loop alone would leave the others
waiting in a collective forever. Rank 0 (the *main* rank) alone writes checkpoints, logs, curves
and exports, and reads the checkpoint it resumes from.

``torchrun`` describes the process to itself through the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``); :func:`world_from_environment` is the one place that reads it. The backend is
NCCL on CUDA devices and gloo on the CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from canfvc_codec.errors import UsageError

# Gradients are averaged in flat buffers of about this size (DistributedDataParallel's default):
# large enough that the per-call latency does not matter, small enough not to double the memory.
BUCKET_BYTES = 25 * (1 << 20)
# How long a rank waits for the others in a collective before failing. Long, since rank 0 may
# be writing a large checkpoint or export while the others wait at the next step.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
ENV_RANK, ENV_WORLD_SIZE, ENV_LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"
ENV_LOCAL_WORLD_SIZE = "LOCAL_WORLD_SIZE"


@dataclass(frozen=True)
class World:
    """Where this process stands among the ranks of a run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the rank on this machine: which GPU it uses
    local_size: int = 1  # the ranks on this machine

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def machines(self) -> int:
        """The machines the ranks run on (torchrun starts as many ranks on each)."""
        return max(1, self.size // self.local_size)

    @property
    def is_distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def world_from_environment(environ: Mapping[str, str] = os.environ) -> World:
    """The world ``torchrun`` describes in the environment; one process when it describes none."""
    if ENV_WORLD_SIZE not in environ:
        return SINGLE
    try:
        world = World(
            rank=int(environ[ENV_RANK]),
            size=int(environ[ENV_WORLD_SIZE]),
            local_rank=int(environ.get(ENV_LOCAL_RANK, "0")),
            local_size=int(environ.get(ENV_LOCAL_WORLD_SIZE, "1")),
        )
    except (KeyError, ValueError):
        raise UsageError(
            f"{ENV_RANK}, {ENV_WORLD_SIZE}, {ENV_LOCAL_RANK} and {ENV_LOCAL_WORLD_SIZE} must be "
            "integers (set by torchrun)"
        ) from None
    if not 0 <= world.rank < world.size:
        raise UsageError(f"rank {world.rank} is outside a world of {world.size}")
    if not 1 <= world.local_size <= world.size:
        raise UsageError(f"{world.local_size} ranks on a machine, in a world of {world.size}")
    return world


def backend_for(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(world: World, device_type: str, init_method: str = "env://") -> Iterator[None]:
    """The process group of a data-parallel run while the block runs (nothing for one process).

    ``init_method`` is torchrun's environment by default; tests pass a ``file://`` rendezvous.
    """
    if not world.is_distributed:
        yield
        return
    if device_type == "cuda":
        torch.cuda.set_device(world.local_rank)  # NCCL's collectives run on this rank's GPU
    dist.init_process_group(
        backend_for(device_type),
        init_method=init_method,
        rank=world.rank,
        world_size=world.size,
        timeout=COLLECTIVE_TIMEOUT,
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


class DataParallel:
    """The collectives a data-parallel training step needs; identities for one process."""

    def __init__(self, world: World, device: torch.device) -> None:
        self.world = world
        # NCCL reduces tensors on the GPU, gloo on the CPU.
        self.device = device if device.type == "cuda" else torch.device("cpu")

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Replace the gradient of every trainable parameter by its mean over the ranks.

        A parameter that got no gradient on any rank keeps none (the optimiser then leaves it
        and its moments alone, as in one process); one that got a gradient on some ranks only
        counts zeros for the others.
        """
        if not self.world.is_distributed:
            return
        trainable = [p for p in parameters if p.requires_grad]
        if not trainable:
            return
        present = torch.tensor(
            [p.grad is not None for p in trainable], dtype=torch.float32, device=self.device
        )
        dist.all_reduce(present)
        buckets: list[list[nn.Parameter]] = [[]]
        size = 0
        for param, count in zip(trainable, present.tolist(), strict=True):
            if count == 0:
                continue
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            nbytes = param.numel() * param.element_size()
            if buckets[-1] and (
                size + nbytes > BUCKET_BYTES or param.dtype != buckets[-1][0].dtype
            ):
                buckets.append([])
                size = 0
            buckets[-1].append(param)
            size += nbytes
        for bucket in buckets:
            if not bucket:
                continue
            flat = torch.cat([p.grad.reshape(-1) for p in bucket]).to(self.device)
            dist.all_reduce(flat)
            flat /= self.world.size
            offset = 0
            for param in bucket:
                count = param.numel()
                param.grad.copy_(flat[offset : offset + count].view_as(param.grad))
                offset += count

    def mean(self, values: list[float]) -> list[float]:
        """The mean of each value over the ranks (a NaN on any rank makes it NaN everywhere)."""
        if not self.world.is_distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return (tensor / self.world.size).tolist()

    def max(self, value: float) -> float:
        """The largest value over the ranks: a step lasts as long as its slowest rank."""
        if not self.world.is_distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any."""
        return self.max(float(flag)) > 0

    def broadcast_object(self, value: object) -> object:
        """Rank 0's ``value`` on every rank (pickled; for checkpoints and small states)."""
        if not self.world.is_distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def gather_objects(self, value: object) -> list[object]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.world.is_distributed:
            return [value]
        values: list[object] = [None] * self.world.size
        dist.all_gather_object(values, value)
        return values

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank, so that the replicas start equal
        (rank 0 alone reads ``--init-weights``)."""
        if not self.world.is_distributed:
            return
        with torch.no_grad():
            for tensor in module.state_dict().values():
                staged = tensor.to(self.device)
                dist.broadcast(staged, src=0)
                if staged is not tensor:
                    tensor.copy_(staged)
