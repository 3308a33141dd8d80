"""
The GPT language model, nanoGPT-shaped, in two flavours chosen by GPTConfig:

- GPT-2 (the defaults): learned positions, LayerNorm with bias, GELU-tanh MLP, tied head. Parameter names
  follow nanoGPT exactly, so nanoGPT checkpoints and (transposed) Hugging Face GPT-2 weights load as they are.
- LLaMA-style: RMSNorm, SwiGLU MLP, rotary positions, grouped key/value heads, optionally untied head. The
  paper's students (and the SmolLM, SmolLM2 and Llama-3.2 teachers, see teacher.py) are of this kind.
A few more switches exist only so that the paper's other teachers load as they are: GPT-NeoX's (Pythia) parallel
block, partial rotary and exact GELU, OPT's ReLU, Llama 3's rotary frequency scaling.

Besides logits and loss, forward() can return the residual stream after chosen blocks (LET aligns one of
these with the teacher); the others are not kept. Blocks are numbered from 0: `hidden_layers=(1,)` returns
the residual stream after self.transformer.h[1], the second block.
This file knows nothing about teachers or LET.
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint


MLPS = ('gelu', 'swiglu', 'gelu_exact', 'relu')
LLAMA3_ROPE_KEYS = ('factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings')


@dataclass
class GPTConfig:
    block_size: int = 1024        # longest sequence (learned positions: the table's size)
    vocab_size: int = 50304       # GPT-2's 50257 padded up to a multiple of 64 for speed
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True             # bias in Linears and LayerNorms (GPT-2: True)
    # LLaMA-style switches (defaults = GPT-2)
    n_kv_head: int = 0            # key/value heads; 0 = n_head (plain multi-head attention)
    norm: str = 'layernorm'       # 'layernorm' | 'rmsnorm'
    norm_eps: float = 1e-5
    mlp: str = 'gelu'             # 'gelu' (GPT-2's GELU-tanh, 4x) | 'gelu_exact' (nanoGPT's; train.py's default,
                                  # and GPT-NeoX's) | 'swiglu' | 'relu' (OPT)
    mlp_hidden: int = 0           # MLP inner width; 0 = ~8/3*n_embd rounded to 64 (swiglu), else 4*n_embd
    pos: str = 'learned'          # 'learned' | 'rope'
    rope_theta: float = 10000.0
    tie_embeddings: bool = True   # lm_head shares the token embedding
    # teachers' switches (defaults = off)
    parallel_block: bool = False  # GPT-NeoX (Pythia): x + attn(ln_1(x)) + mlp(ln_2(x)), both read the same x
    rope_dims: int = 0            # rotary on the first rope_dims of each head, the rest unrotated; 0 = the whole
                                  # head (GPT-NeoX rotates a quarter)
    rope_scaling: Optional[dict] = None  # Llama 3's long-context frequency scaling (Hugging Face rope_type
                                  # 'llama3'): {'factor', 'low_freq_factor', 'high_freq_factor',
                                  # 'original_max_position_embeddings'}; None = plain rotary

    def __post_init__(self):
        # impossible shapes are caught here, before any weight is allocated: (ok, the error), the first that fails
        # is raised
        self.n_kv_head = self.n_kv_head or self.n_head
        head_size = self.n_embd // self.n_head if self.n_head > 0 else 0
        self.rope_dims = self.rope_dims or head_size
        positive = ('block_size', 'vocab_size', 'n_layer', 'n_head', 'n_embd')
        checks = [(getattr(self, k) > 0, f"{k}={getattr(self, k)} must be positive") for k in positive] + [
            (self.n_head > 0 and self.n_embd % self.n_head == 0,
             f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; pick n_embd = n_head * head_size"),
            (self.n_kv_head > 0 and self.n_head % self.n_kv_head == 0,
             f"n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}"),
            (self.norm in ('layernorm', 'rmsnorm'), f"norm={self.norm!r}: use 'layernorm' or 'rmsnorm'"),
            (self.mlp in MLPS, f"mlp={self.mlp!r}: use one of {MLPS}"),
            (self.pos in ('learned', 'rope'), f"pos={self.pos!r}: use 'learned' or 'rope'"),
            (self.pos != 'rope' or (self.rope_dims % 2 == 0 and 0 < self.rope_dims <= head_size),
             f"rotary needs an even rope_dims={self.rope_dims} of at most the head size {head_size}"),
            (self.rope_scaling is None or set(self.rope_scaling) == set(LLAMA3_ROPE_KEYS),
             f"rope_scaling={self.rope_scaling!r}: give exactly {LLAMA3_ROPE_KEYS}"),
            (0.0 <= self.dropout < 1.0, f"dropout={self.dropout} must be in [0, 1)"),
        ]
        for ok, error in checks:
            if not ok:
                raise ValueError(f"model config: {error}")
        if self.mlp_hidden == 0:
            self.mlp_hidden = 4 * self.n_embd if self.mlp != 'swiglu' else 64 * math.ceil(8 * self.n_embd / 3 / 64)


def padded_vocab(n):
    """A vocabulary of n ids rounded up to a multiple of 64 (faster matmuls); the extra ids never occur in data."""
    return 64 * math.ceil(n / 64)


class RMSNorm(nn.Module):
    def __init__(self, ndim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.eps = eps

    def forward(self, x):
        # computed in float32 as LLaMA does, then cast back
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.type_as(x)


def make_norm(config):
    if config.norm == 'rmsnorm':
        return RMSNorm(config.n_embd, config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def llama3_scaled(inv_freq, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings):
    """Llama 3.1's rotary scaling for a longer context: wavelengths longer than the original context divided by
    low_freq_factor are stretched by factor, those shorter than it divided by high_freq_factor are kept, those in
    between are blended smoothly.
    https://github.com/meta-llama/llama-models (apply_scaling); transformers' _compute_llama3_parameters."""
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = original_max_position_embeddings / low_freq_factor
    high_freq_wavelen = original_max_position_embeddings / high_freq_factor
    smooth = (original_max_position_embeddings / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(medium, blended, scaled)


def rotary_tables(rope_dims, max_len, theta, scaling=None):
    """cos/sin tables (T, rope_dims) for rotate-half rotary embeddings (the Hugging Face LLaMA layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rope_dims, 2, dtype=torch.float32) / rope_dims))
    if scaling:
        inv_freq = llama3_scaled(inv_freq, **scaling)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (T, rope_dims/2)
    angles = torch.cat((angles, angles), dim=-1)                              # (T, rope_dims)
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    # x: (B, nh, T, hs); cos, sin: (T, rope_dims), rope_dims <= hs: the rest of each head passes unrotated
    rope_dims = cos.size(-1)
    x_rot, x_pass = x[..., :rope_dims], x[..., rope_dims:]
    x1, x2 = x_rot.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    x_rot = (x_rot * cos + rotated * sin).type_as(x)
    return x_rot if x_pass.size(-1) == 0 else torch.cat((x_rot, x_pass), dim=-1)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        self.head_size = config.n_embd // config.n_head
        # query, key and value projections in one matmul: n_head query heads, n_kv_head key and value heads
        self.c_attn = nn.Linear(config.n_embd, (config.n_head + 2 * config.n_kv_head) * self.head_size,
                                bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout

    def forward(self, x, rope=None):
        B, T, C = x.size()
        hs = self.head_size
        q, k, v = self.c_attn(x).split([self.n_head * hs, self.n_kv_head * hs, self.n_kv_head * hs], dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)     # (B, nh, T, hs)
        k = k.view(B, T, self.n_kv_head, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.n_kv_head, hs).transpose(1, 2)  # (B, nkv, T, hs)
        if rope is not None:
            cos, sin = rope
            q, k = apply_rotary(q, cos[:T], sin[:T]), apply_rotary(k, cos[:T], sin[:T])
        if self.n_kv_head != self.n_head:
            # grouped key/value heads: each serves n_head // n_kv_head query heads
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.kind = config.mlp
        # SwiGLU's gate and up projections share one matmul (gate first, then up)
        self.c_fc = nn.Linear(config.n_embd, (2 if self.kind == 'swiglu' else 1) * config.mlp_hidden, bias=config.bias)
        self.c_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        h = self.c_fc(x)
        if self.kind == 'swiglu':
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        elif self.kind == 'gelu':
            h = F.gelu(h, approximate='tanh')
        elif self.kind == 'gelu_exact':
            h = F.gelu(h)
        else:  # 'relu'
            h = F.relu(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)
        self.parallel = config.parallel_block

    def forward(self, x, rope=None):
        if self.parallel:  # GPT-NeoX: attention and MLP both read x, their outputs add
            return x + self.attn(self.ln_1(x), rope) + self.mlp(self.ln_2(x))
        x = x + self.attn(self.ln_1(x), rope)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        modules = dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=make_norm(config),
        )
        if config.pos == 'learned':
            modules['wpe'] = nn.Embedding(config.block_size, config.n_embd)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.transformer.wte.weight = self.lm_head.weight  # https://paperswithcode.com/method/weight-tying
        if config.pos == 'rope':  # computed, never saved: init_weights fills them
            self.register_buffer('rope_cos', torch.empty(config.block_size, config.rope_dims), persistent=False)
            self.register_buffer('rope_sin', torch.empty(config.block_size, config.rope_dims), persistent=False)
        # activation checkpointing: backward recomputes each block's inside from its input instead of
        # keeping it. A way of running, not a shape: set by train.py, never saved in model_args.
        self.activation_checkpointing = False
        if not self.lm_head.weight.is_meta:  # on the meta device: shapes only, init_weights comes later
            self.init_weights()

    def to_empty(self, *, device, recurse=True):
        """nn.Module's, keeping a tied head tied: for plain tensors it makes a new parameter per module."""
        super().to_empty(device=device, recurse=recurse)
        if self.config.tie_embeddings:
            self.transformer.wte.weight = self.lm_head.weight
        return self

    @torch.no_grad()
    def init_weights(self, generator=None):
        """GPT-2's initialisation: normal(0, 0.02) for every matmul weight and embedding, the residual
        projections (c_proj) scaled by 1/sqrt(2 * n_layer) (GPT-2 paper), norms at 1, biases at 0; and the rotary
        tables. Each parameter is drawn whole on the CPU from generator (default: torch's), in
        named_parameters() order, then copied in. So a student built on the meta device and sharded (FSDP, see
        train.py) gets on every rank its slice of exactly the weights one process draws whole: no process ever
        holds the whole student, and the run starts where a DDP run with the same seed starts."""
        norms = {id(m.weight) for m in self.modules() if isinstance(m, (nn.LayerNorm, RMSNorm))}
        for name, p in self.named_parameters():  # a tied weight once
            full = torch.empty(p.shape, dtype=p.dtype, device='cpu')
            if name.endswith('bias'):
                full.zero_()
            elif id(p) in norms:
                full.fill_(1.0)
            else:
                std = 0.02 / math.sqrt(2 * self.config.n_layer) if name.endswith('c_proj.weight') else 0.02
                full.normal_(0.0, std, generator=generator)
            if isinstance(p, DTensor):  # this rank's slice, cut here without communication (all drew the same)
                full = distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None)
            p.copy_(full)
        if self.config.pos == 'rope':
            c = self.config
            cos, sin = rotary_tables(c.rope_dims, c.block_size, c.rope_theta, c.rope_scaling)
            self.rope_cos.copy_(cos)
            self.rope_sin.copy_(sin)

    def get_num_params(self, non_embedding=True):
        """Parameters counted once (a tied head is the embedding). non_embedding drops the position table,
        as nanoGPT does; the token table stays because the (tied) head uses it as a matmul."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.config.pos == 'learned':
            n -= self.transformer.wpe.weight.numel()
        return n

    def _trunk(self, idx, hidden_layers=(), last=None):
        """Embed and run the blocks (only 0..last when last is given: what comes after is not needed); returns
        the residual stream after the last block run (before ln_f) and the residual streams after the blocks
        named in hidden_layers (0-based), in that order."""
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size={self.config.block_size}")
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.config.pos == 'learned':
            x = x + self.transformer.wpe(torch.arange(T, dtype=torch.long, device=idx.device))
        else:
            rope = (self.rope_cos, self.rope_sin)
        x = self.transformer.drop(x)
        keep = {layer: i for i, layer in enumerate(hidden_layers)}
        hidden = [None] * len(hidden_layers)
        for layer, block in enumerate(self.transformer.h if last is None else self.transformer.h[:last + 1]):
            if self.activation_checkpointing and torch.is_grad_enabled():
                # memory: one (B, T, C) input per block instead of all its intermediate tensors, for
                # a second forward of the block in backward (~1/3 more compute per step)
                x = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope)
            if layer in keep:
                hidden[keep[layer]] = x  # (B, T, C), kept only for the blocks asked for
        return x, hidden

    def forward(self, idx, targets=None, hidden_layers=None):
        """idx: (B, T) token ids; targets: (B, T) next-token ids (-1 = ignore) or None.
        Returns (logits, loss), or (logits, loss, hidden) when hidden_layers is given (a tuple of block
        indices, maybe empty): hidden is a list of the residual streams (B, T, n_embd) after those blocks.
        Without targets, only the last position's logits are computed (what sampling needs), loss is None."""
        x, hidden = self._trunk(idx, hidden_layers or ())
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        else:
            logits = self.lm_head(x[:, [-1], :])  # (B, 1, vocab)
            loss = None
        if hidden_layers is not None:
            return logits, loss, hidden
        return logits, loss

    def final_hidden(self, idx, with_logits=False, layer=-1):
        """The last layer's hidden state after the final norm, (B, T, n_embd): what Hugging Face returns as
        hidden_states[-1], and what a LET teacher provides. With with_logits, also all logits (B, T, vocab).
        layer j >= 0 instead gives the residual stream after block j, not normed (Hugging Face's
        hidden_states[j + 1]): without logits only blocks 0..j run; with them, one forward gives both."""
        if layer >= 0 and not with_logits:
            return self._trunk(idx, last=layer)[0]
        x, hidden = self._trunk(idx, (layer,) if layer >= 0 else ())
        x = self.transformer.ln_f(x)
        h = hidden[0] if layer >= 0 else x
        if with_logits:
            return h, self.lm_head(x)
        return h

    def forward_flops_per_token(self, seq_len, head=True, blocks=None):
        """Forward-pass FLOPs per token at sequence length seq_len: 2 per weight of every matmul (embedding
        lookups excluded) plus attention's two (T x T) matmuls, counted in full as PaLM's appendix B does, in the
        first `blocks` blocks (None: all of them) and the head unless head=False (as in final_hidden()). A
        training step costs 3x this (backward = 2x forward)."""
        run = self.transformer.h[:self.config.n_layer if blocks is None else blocks]
        linears = [m for block in run for m in block.modules() if isinstance(m, nn.Linear)]
        matmul_weights = sum(m.weight.numel() for m in linears + ([self.lm_head] if head else []))
        attention = 2 * 2 * len(run) * seq_len * self.config.n_embd  # q@k^T and att@v, each 2*T*n_embd per token
        return 2 * matmul_weights + attention

    def configure_optimizers(self, weight_decay, learning_rate, betas, extra_params=()):
        """AdamW with weight decay on matrices (2-D and up) only; fused (one kernel for all parameters) on every
        device, the CPU included, so that CPU tests run the implementation CUDA runs.
        extra_params: further trainable parameters (LET's projector) that share the optimizer."""
        params = [p for p in self.parameters() if p.requires_grad] + [p for p in extra_params if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{'params': decay, 'weight_decay': weight_decay},
                  {'params': no_decay, 'weight_decay': 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=True)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Sample max_new_tokens continuing idx (B, T), feeding predictions back in (no KV cache)."""
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size:]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :] / max(temperature, 1e-8)
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float('Inf')
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx
