"""The in-memory batched pipeline: the whole (small) dataset is one tensor on the training device
and augmentation is applied to whole batches there — no per-sample Python work (the biggest
single win in Page's and airbench's fast CIFAR training).

Data order and augmentation are a pure function of (seed, epoch, rank), and the position inside
the epoch is saved in checkpoints, so a resumed run replays exactly the batches it would have
seen."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reslab.data.steps import lone_last


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad`, take a random crop of the original size and (optionally) mirror, per
    image, as one gather over the batch (the paper's CIFAR augmentation, §4.2)."""
    n, c, h, w = x.shape
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        x = x[batch, chan, rows, cols]
    if flip:
        mirror = torch.rand(n, generator=gen, device=x.device) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    return x


class ResumableLoader:
    """What Lightning needs of a DataLoader, for loaders whose batches are a pure function of
    (seed, epoch, rank, batch index): `sampler.set_epoch` each epoch, and `state_dict` /
    `load_state_dict` carrying the position within the epoch in checkpoints. Subclasses set
    `per_rank` and `batch_size` and implement `batch(b)`."""

    batch_sampler = None  # Lightning inspects DataLoader-like attributes
    per_rank: int
    batch_size: int

    def __init__(self, seed: int, rank: int, world_size: int):
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self._start, self._yielded = 0, 0, 0

    @property
    def sampler(self) -> ResumableLoader:
        return self  # Lightning calls `dataloader.sampler.set_epoch(epoch)`

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._start = epoch, 0

    def __len__(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

    def generator(self, *salt: int, device: torch.device | str = "cpu") -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(hash((self.seed, self.epoch) + salt) & 0x7FFF_FFFF_FFFF)
        return g

    def begin_epoch(self) -> None:
        """Called before the first batch of each pass."""

    def batch(self, b: int):
        raise NotImplementedError

    def __iter__(self):
        self.begin_epoch()
        start = self._start if self._start < len(self) else 0
        self._start, self._yielded = 0, start
        for b in range(start, len(self)):
            batch = self.batch(b)
            self._yielded = b + 1
            yield batch

    def state_dict(self) -> dict:
        # Lightning fetches no batch ahead from a loader with a length: yielded = trained.
        return {"epoch": self.epoch, "batches": self._yielded}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self._start = int(state["epoch"]), int(state["batches"])


class MemoryLoader(ResumableLoader):
    """An iterable of (images, labels) batches over tensors already on the device."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool,
                 pad: int = 0, flip: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        super().__init__(seed, rank, world_size)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.pad, self.flip = shuffle, pad, flip
        # Every rank gets the same number of samples (DDP needs equal step counts).
        per_rank = len(x) // world_size
        self.per_rank = per_rank - lone_last(per_rank, batch_size) if shuffle else \
            len(range(rank, len(x), world_size))

    def begin_epoch(self) -> None:
        if not self.shuffle:
            self.idx = torch.arange(self.rank, len(self.x), self.world_size, device=self.x.device)
            return
        # The same permutation on every rank, so the shards are disjoint.
        perm = torch.randperm(len(self.x), generator=self.generator(-1, device=self.x.device),
                              device=self.x.device)
        self.idx = perm[: self.per_rank * self.world_size][self.rank :: self.world_size]

    def batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        sel = self.idx[b * self.batch_size : (b + 1) * self.batch_size]
        xb = self.x[sel]
        if self.pad or self.flip:
            # Seeded per (epoch, rank, batch): any batch can be replayed on its own.
            gen = self.generator(self.rank, b, device=self.x.device)
            xb = random_crop_flip(xb, self.pad, self.flip, gen)
        return xb, self.y[sel]
