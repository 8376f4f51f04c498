"""The batches of one rank: drawn by number, in DataLoader workers, so that a resume is exact.

Batch ``k`` of rank ``r`` is drawn by a generator seeded with ``(seed, r, k)`` alone: which
sequences, windows, crops, scales, flips and time reversals it holds does not depend on how many
workers drew it, in which order they finished, or how many batches they had prefetched. The state
of a rank's data is therefore one number, the batches drawn so far, the same on every rank; a
resumed run continues at that number with each rank's own stream. Every rank draws from the whole
data set with its own stream, so the ranks' batches are independent draws (sampling is with
replacement, as random windows and crops of a few sequences have to be).

When the number of ranks changes between runs, the ranks that were there before go on with their
streams, a new rank starts its own at the same batch number, and a rank that is gone leaves its
stream unread: the global batch grows or shrinks with the ranks, and nothing is drawn twice.

With ``workers`` = 0 batches are drawn in the training process itself (on the training device,
as before there were workers); with more they are drawn on the CPU by that many DataLoader worker
processes, each drawing whole batches, which the training process then moves to its device.
A phase change changes what a batch is (frames per sequence, or frame pairs with their flows):
the prefetched batches are dropped and the workers start again from the next batch number.

Frames travel as 8-bit pictures, rounded where a down-scaling or a synthetic camera made them
fractional, and become floats in [0, 1] on the training device: a quarter of the bytes to copy
between processes and to the GPU (a batch of 8 seven-frame 256x256 sequences is 11 MB instead
of 44 MB; the copy of the floats cost a worker more than half as much time again as drawing
them), and pictures of the kind the codec codes. The rounding is the same with and without
workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.utils.data

from canfvc_codec.errors import InputError
from canfvc_codec.train.data import TrainingData

# Batches each worker keeps ready (DataLoader's default).
PREFETCH_PER_WORKER = 2
PIXEL_LEVELS = 255.0  # frames travel as uint8
Batch = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Request:
    """What a batch holds: ``frames``-long sequences, or (with ``flow_still_fraction``) frame
    pairs with their flows, that share of them from stills whose flow is known."""

    frames: int
    flow_still_fraction: float | None = None


def batch_generator(seed: int, rank: int, number: int) -> np.random.Generator:
    """The generator that draws batch ``number`` of ``rank``."""
    return np.random.default_rng(np.random.SeedSequence([seed, rank, number]))


def to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """Frames in [0, 1] as the nearest 8-bit levels."""
    return frames.mul(PIXEL_LEVELS).round_().to(torch.uint8)


def from_pixels(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float().div_(PIXEL_LEVELS)


@dataclass(frozen=True)
class _Failure:
    """A data error met in a worker, handed to the training process to report as one line (a
    worker's exception would reach the user wrapped in the worker's traceback)."""

    message: str


class _Batches(torch.utils.data.Dataset):
    """Batch ``number`` of this rank, drawn for a request: indexed by ``(number, request)``."""

    def __init__(self, data: TrainingData, batch: int, seed: int, rank: int) -> None:
        self.data = data
        self.batch = batch
        self.seed = seed
        self.rank = rank

    def __getitem__(self, key: tuple[int, Request]) -> Batch | _Failure:
        number, request = key
        # The sampler draws everything from its generator: give it this batch's own.
        self.data.rng = batch_generator(self.seed, self.rank, number)
        try:
            if request.flow_still_fraction is not None:
                frames, flows, known = self.data.flow_pairs(self.batch, request.flow_still_fraction)
                return to_pixels(frames), flows, known
            return to_pixels(self.data.sequences(self.batch, request.frames))
        except InputError as err:
            return _Failure(str(err))


class _Numbers(torch.utils.data.Sampler):
    """``(number, request)`` from ``start`` on, for as long as the loader asks."""

    def __init__(self) -> None:
        self.start = 0
        self.request = Request(1)

    def __iter__(self):
        number = self.start
        while True:
            yield number, self.request
            number += 1


class BatchStream:
    """This rank's batches, in order, for whatever request the current phase makes."""

    def __init__(
        self,
        data: TrainingData,
        batch: int,
        *,
        seed: int,
        rank: int = 0,
        workers: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.data = data
        self.batch = batch
        self.seed = seed
        self.rank = rank
        self.workers = workers
        self.device = torch.device(device)
        self.drawn = 0  # batches handed to training so far
        self._dataset = _Batches(data, batch, seed, rank)
        self._numbers = _Numbers()
        self._loader: torch.utils.data.DataLoader | None = None
        self._iterator = None
        self._request: Request | None = None

    @property
    def sources(self) -> dict:
        return self.data.sources

    def state_dict(self) -> dict:
        return {"seed": self.seed, "drawn": self.drawn}

    def load_state_dict(self, state: dict) -> None:
        self.seed = state["seed"]
        self.drawn = state["drawn"]
        self._dataset.seed = self.seed
        self._iterator = None  # prefetched batches belong to the old position

    def next(self, request: Request) -> Batch:
        """The next batch for ``request``, on the training device."""
        if self.workers == 0:
            batch = self._dataset[self.drawn, request]
        else:
            batch = self._next_from_workers(request)
        if isinstance(batch, _Failure):
            raise InputError(batch.message)
        self.drawn += 1
        non_blocking = self.device.type == "cuda"
        if isinstance(batch, tuple | list):  # the loader hands tuples on as lists
            frames, *rest = (t.to(self.device, non_blocking=non_blocking) for t in batch)
            return (from_pixels(frames), *rest)
        return from_pixels(batch.to(self.device, non_blocking=non_blocking))

    def _next_from_workers(self, request: Request) -> Batch | _Failure:
        if self._iterator is None or request != self._request:
            self._restart(request)
        return next(self._iterator)

    def _restart(self, request: Request) -> None:
        """Workers drawing from batch ``drawn`` on for ``request``."""
        self._numbers.start = self.drawn
        self._numbers.request = request
        self._request = request
        if self._loader is None:
            self._loader = torch.utils.data.DataLoader(
                self._dataset,
                batch_size=None,  # each item is a whole batch, drawn by one worker
                sampler=self._numbers,
                num_workers=self.workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=True,
                prefetch_factor=PREFETCH_PER_WORKER,
            )
        # A new iterator over persistent workers drops what they had prefetched.
        self._iterator = iter(self._loader)

    def close(self) -> None:
        """Stop the workers."""
        self._iterator = None
        self._loader = None
