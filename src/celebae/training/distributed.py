"""This process's place in a ``torchrun`` DDP job (or a job of one): rank, world size, collectives."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Processes:
    """This process's place in a (possibly single-process) DDP job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # this module started the process group, so it ends it

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def mean_(self, t: torch.Tensor) -> torch.Tensor:
        """Average a tensor over the processes in place (the global batch's loss, not this rank's share)."""
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.AVG)
        return t

    def end(self) -> None:
        if self.owned:
            dist.destroy_process_group()


def start_processes() -> Processes:
    """Join the DDP job ``torchrun`` set up, if any (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes()
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owned)
