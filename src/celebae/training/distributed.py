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
        """Average a tensor over the processes in place (the global batch's loss, not this rank's share).
        A sum and a division: gloo in torch 2.4 has no ``ReduceOp.AVG``."""
        if self.world > 1:
            dist.all_reduce(t)
            t.div_(self.world)
        return t

    def all_ok(self, ok: bool) -> bool:
        """True when ``ok`` holds on every process (each process calls it at the same point)."""
        if self.world == 1:
            return ok
        flag = torch.tensor([0 if ok else 1], dtype=torch.int32, device=self.device)
        dist.all_reduce(flag)
        return int(flag.item()) == 0

    def any(self, flag: bool) -> bool:
        """True when ``flag`` holds on some process (a signal that reached one rank stops them all)."""
        return not self.all_ok(not flag)

    @property
    def device(self) -> torch.device:
        """Where this job's collectives run: NCCL needs the rank's GPU, gloo the CPU."""
        if dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

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
