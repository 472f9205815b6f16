"""Residual vector quantizer with factorized, L2-normalized codes (DAC-style).

Each stage projects the residual to a small ``codebook_dim`` space, L2-normalizes it and the codebook, picks the
nearest entry (= highest cosine), and projects back. Gradients pass to the encoder by the straight-through
estimator. Codebook 0 may have its own size (the "semantic" codebook); quantizer dropout only ever drops
residual codebooks 1..K-1. Codes that go unused for ``dead_code_steps`` training steps are re-initialized from
random recent encoder outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    """Result of ``ResidualVQ.forward``.

    Attributes:
        z_q: [B, D, T] sum of the (kept) quantized stages, straight-through w.r.t. the input.
        codes: [B, K, T] code indices of every stage (dropped stages included).
        commitment_loss: scalar, pulls encoder outputs towards their codes.
        codebook_loss: scalar, pulls codes towards encoder outputs.
        first_latent: [B, D, T] quantized output of codebook 0 alone (input of the semantic head).
    """

    z_q: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    first_latent: torch.Tensor


class FactorizedVQ(nn.Module):
    """One VQ stage.

    Args:
        dim: latent channels D.
        codebook_size: number of entries C.
        codebook_dim: low dimension the lookup runs in.
    """

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.in_proj = nn.Conv1d(dim, codebook_dim, 1)
        self.out_proj = nn.Conv1d(codebook_dim, dim, 1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        # Training steps since each code was last picked; drives dead-code reinitialization.
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long), persistent=False)

    def lookup(self, z_e: torch.Tensor) -> torch.Tensor:
        """Args: z_e: [B, d, T] projected latent. Returns: [B, T] nearest-code indices (cosine)."""
        enc = F.normalize(z_e.transpose(1, 2).reshape(-1, z_e.shape[1]), dim=-1)
        cb = F.normalize(self.codebook.weight, dim=-1)
        return (enc @ cb.t()).argmax(-1).view(z_e.shape[0], z_e.shape[2])

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Args: codes: [B, T]. Returns: [B, D, T] latent contribution of this stage."""
        return self.out_proj(F.normalize(self.codebook(codes), dim=-1).transpose(1, 2))

    def forward(self, residual: torch.Tensor):
        """Quantize one residual.

        Args:
            residual: [B, D, T].

        Returns:
            (z_q [B, D, T], codes [B, T], commitment [B], codebook [B], z_e_low [B, d, T]): per-sample losses.
        """
        z_e = self.in_proj(residual)
        codes = self.lookup(z_e)
        z_e_n = F.normalize(z_e, dim=1)
        q = F.normalize(self.codebook(codes), dim=-1).transpose(1, 2)
        commitment = F.mse_loss(z_e_n, q.detach(), reduction="none").mean(dim=(1, 2))
        codebook = F.mse_loss(q, z_e_n.detach(), reduction="none").mean(dim=(1, 2))
        q = z_e_n + (q - z_e_n).detach()  # straight-through
        return self.out_proj(q), codes, commitment, codebook, z_e

    @torch.no_grad()
    def update_dead_codes(self, codes: torch.Tensor, z_e: torch.Tensor, dead_code_steps: int) -> int:
        """Count usage and replace codes unused for more than ``dead_code_steps`` steps.

        Args:
            codes: [B, T] indices picked this step.
            z_e: [B, d, T] projected encoder outputs of this step (the replacement pool).
            dead_code_steps: threshold in steps.

        Returns:
            Number of codes replaced.
        """
        used = torch.zeros_like(self.unused_steps, dtype=torch.bool)
        used[codes.flatten()] = True
        self.unused_steps.add_(1).masked_fill_(used, 0)
        dead = (self.unused_steps > dead_code_steps).nonzero().flatten()
        if dead.numel() == 0 or codes.numel() == 0:
            return 0
        pool = z_e.transpose(1, 2).reshape(-1, z_e.shape[1])
        pick = torch.randint(0, pool.shape[0], (dead.numel(),), device=pool.device)
        self.codebook.weight.data[dead] = pool[pick].to(self.codebook.weight.dtype)
        self.unused_steps[dead] = 0
        return int(dead.numel())


class ResidualVQ(nn.Module):
    """Stack of ``FactorizedVQ`` stages, each quantizing what the previous ones left.

    Args:
        dim: latent channels D.
        codebook_sizes: entries per stage; index 0 is the semantic codebook.
        codebook_dim: low dimension of the lookup (8 in DAC / S2).
        quantizer_dropout: fraction of training samples that keep only a random number of stages
            (codebook 0 always kept).
        dead_code_steps: re-initialize codes unused for this many training steps (0 disables).
    """

    def __init__(
        self,
        dim: int,
        codebook_sizes: list[int],
        codebook_dim: int = 8,
        quantizer_dropout: float = 0.5,
        dead_code_steps: int = 0,
    ):
        super().__init__()
        self.codebook_sizes = list(codebook_sizes)
        self.quantizer_dropout = quantizer_dropout
        self.dead_code_steps = dead_code_steps
        self.stages = nn.ModuleList([FactorizedVQ(dim, c, codebook_dim) for c in codebook_sizes])

    def keep_mask(self, batch: int, device: torch.device) -> torch.Tensor:
        """Sample which stages each sample keeps: [B, K] bool, column 0 always True."""
        k = len(self.stages)
        keep = torch.ones(batch, k, dtype=torch.bool, device=device)
        if not self.training or self.quantizer_dropout <= 0 or k == 1:
            return keep
        n_keep = torch.randint(1, k + 1, (batch,), device=device)
        dropped = torch.rand(batch, device=device) < self.quantizer_dropout
        n_keep = torch.where(dropped, n_keep, torch.full_like(n_keep, k))
        return torch.arange(k, device=device)[None, :] < n_keep[:, None]

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize a latent.

        Args:
            z: [B, D, T] encoder latent.

        Returns:
            ``QuantizerOutput``; in training mode, dropped stages add nothing to ``z_q`` or the losses.
        """
        keep = self.keep_mask(z.shape[0], z.device)
        residual, z_q = z, torch.zeros_like(z)
        codes, commit, cbl = [], z.new_zeros(()), z.new_zeros(())
        first = None
        for k, stage in enumerate(self.stages):
            out, idx, c_loss, b_loss, z_e = stage(residual)
            m = keep[:, k].to(z.dtype)
            z_q = z_q + out * m[:, None, None]
            # Dropped stages still quantize (so codes match eval mode); they only stop contributing.
            residual = residual - out
            commit = commit + (c_loss * m).mean()
            cbl = cbl + (b_loss * m).mean()
            codes.append(idx)
            if k == 0:
                first = out
            if self.training and self.dead_code_steps > 0:
                sel = keep[:, k]
                stage.update_dead_codes(idx[sel], z_e[sel].detach(), self.dead_code_steps)
        return QuantizerOutput(z_q, torch.stack(codes, dim=1), commit, cbl, first)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Args: codes: [B, K', T] with K' <= K. Returns: [B, D, T] summed latent."""
        return sum(self.stages[k].decode_codes(codes[:, k]) for k in range(codes.shape[1]))
