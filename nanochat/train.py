"""nanochat train.py: a small modern GPT trained for a fixed wall-clock budget.

This is the file the agent edits. prepare.py beside it (data, tokenizer, the
metric) is fixed. Keep this contract when editing, or the run is not scored:

* `build_model(config: dict) -> torch.nn.Module`, a module-level function.
  `model(idx)` takes token ids of shape (B, T), T up to prepare.EVAL_SEQ_LEN,
  and returns logits of shape (B, T, vocab_size). Logits at position t may
  depend only on idx[:, :t+1]; the evaluator checks this and refuses the run
  otherwise.
* When the environment variable AR_CHECKPOINT is set, save
  `{"config": config, "state_dict": model.state_dict()}` there with
  torch.save, where `config` is a plain dict (str / int / float / bool) that
  build_model turns back into the same model (an optional "dataset" entry,
  the prepared dataset's name, lets the evaluator refuse a mismatch).
  `python -m nanochat.evaluate` rebuilds the model from it in a separate
  process and computes val_bpb itself; that is the number the harness records.
* Training runs only under `if __name__ == "__main__":`, so importing this
  file builds nothing.
* Output: progress lines, then a line `---` and `key: value` lines including
  val_bpb, training_seconds, total_seconds, peak_memory_mb, num_steps,
  num_params_M, tokens_per_sec.
* The training budget is TIME_BUDGET seconds of optimisation steps (the
  harness sets AR_TIME_BUDGET); start-up and evaluation do not count.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time

# Idle OpenMP threads must sleep, not spin: on a busy machine spinning threads
# made each step 10-20x slower. Read by the OpenMP runtime when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from prepare import EVAL_SEQ_LEN, evaluate_bpb, load_dataset  # noqa: E402

# ---------------------------------------------------------------------------
# Device. CUDA trains in bf16 autocast; MPS and CPU in float32.

if torch.cuda.is_available():
    DEVICE = "cuda"
elif torch.backends.mps.is_available():
    DEVICE = "mps"
else:
    DEVICE = "cpu"
ACCELERATED = DEVICE != "cpu"


def per_device(cpu, accelerated):
    """The CPU default sizes for a laptop-class CPU; the other for an H100-class GPU."""
    return accelerated if ACCELERATED else cpu


# ---------------------------------------------------------------------------
# Knobs

TIME_BUDGET = float(os.environ.get("AR_TIME_BUDGET", 60))  # seconds of training steps
# The harness gives every run its own seed (AR_SEED, docs/reference/run-dir.md), so repeats
# measure seed-to-seed noise; 1337 is the fallback for a run outside ar-tui.
SEED = int(os.environ.get("AR_SEED", "1337"))
CPU_THREADS = max(1, (os.cpu_count() or 2) // 2)  # torch threads on CPU; leaves room for the harness and the UI

# model
DEPTH = per_device(2, 12)  # transformer blocks
WIDTH = per_device(128, 768)  # residual stream width
HEAD_DIM = per_device(32, 128)  # width of one attention head
MLP_RATIO = 4  # hidden width of the MLP, in multiples of WIDTH
SEQ_LEN = EVAL_SEQ_LEN  # training context; the evaluator uses EVAL_SEQ_LEN, so shorter hurts
ROPE_BASE = 10_000  # rotary embedding base frequency
LOGIT_SOFTCAP = per_device(0.0, 15.0)  # tanh cap on the logits (0 = off); costs CPU time on the big logits tensor

# optimisation
BATCH_SIZE = per_device(8, 128)  # sequences per step; on CPU, more small steps beat fewer big ones
MATRIX_LR = 0.02  # Muon learning rate for the 2-D weights inside the blocks
EMBED_LR = 0.3  # Adam learning rate for the token embedding
HEAD_LR = per_device(0.016, 0.004)  # Adam learning rate for the output projection (larger for narrow models)
ADAM_BETAS = (0.8, 0.95)  # Adam momentum terms (embedding and head)
MUON_MOMENTUM = 0.95  # Muon momentum
WARMUP_FRACTION = 0.0  # of the time budget, linear warm-up of every LR
COOLDOWN_FRACTION = 0.4  # of the time budget, linear decay to FINAL_LR_FRACTION at the end
FINAL_LR_FRACTION = 0.0  # LR multiplier reached at the end of training
COMPILE = per_device(False, True)  # torch.compile the model (its compile time is not counted)

# guards and output
MAX_LOSS = 20.0  # a loss above this (or NaN) means training diverged: stop at once
PROGRESS_INTERVAL_S = 1.0  # seconds between progress lines


# ---------------------------------------------------------------------------
# Model


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotary_tables(seq_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self, width: int, head_dim: int):
        super().__init__()
        self.n_head = width // head_dim
        self.head_dim = head_dim
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).unbind(dim=2)
        # QK-norm, then rotary: stable attention logits without a learned scale.
        # Under autocast the norm may run in float32; attention wants one dtype.
        q = apply_rotary(rms_norm(q), cos, sin).to(v.dtype)
        k = apply_rotary(rms_norm(k), cos, sin).to(v.dtype)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, width: int, ratio: int):
        super().__init__()
        self.up = nn.Linear(width, ratio * width, bias=False)
        self.down = nn.Linear(ratio * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)).square())  # ReLU^2


class Block(nn.Module):
    def __init__(self, width: int, head_dim: int, mlp_ratio: int):
        super().__init__()
        self.attn = Attention(width, head_dim)
        self.mlp = MLP(width, mlp_ratio)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(rms_norm(x), cos, sin)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, depth: int, width: int, head_dim: int, mlp_ratio: int,
                 seq_len: int, rope_base: float, logit_softcap: float):
        super().__init__()
        self.logit_softcap = logit_softcap
        self.embed = nn.Embedding(vocab_size, width)
        self.blocks = nn.ModuleList(Block(width, head_dim, mlp_ratio) for _ in range(depth))
        self.head = nn.Linear(width, vocab_size, bias=False)
        cos, sin = rotary_tables(seq_len, head_dim, rope_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.embed.weight, std=1.0)
        for block in self.blocks:
            for linear in (block.attn.qkv, block.mlp.up):
                bound = math.sqrt(3.0 / linear.in_features)
                nn.init.uniform_(linear.weight, -bound, bound)
            # Zero output projections: every block starts as the identity.
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.down.weight)
        nn.init.zeros_(self.head.weight)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.size(1)
        cos, sin = self.cos[:, :T].to(self.embed.weight.dtype), self.sin[:, :T].to(self.embed.weight.dtype)
        x = rms_norm(self.embed(idx))
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.head(rms_norm(x)).float()
        if self.logit_softcap:
            logits = self.logit_softcap * torch.tanh(logits / self.logit_softcap)
        return logits


def build_model(config: dict) -> GPT:
    return GPT(**config)


# ---------------------------------------------------------------------------
# Optimiser: Muon for the matrices inside the blocks, Adam for embedding and head.


def orthogonalize(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Newton-Schulz iteration towards the nearest semi-orthogonal matrix (Muon)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16() if G.is_cuda else G.float()
    transposed = X.size(0) > X.size(1)
    if transposed:
        X = X.T
    X = X / (X.norm() + 1e-7)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return (X.T if transposed else X).to(G.dtype)


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum", torch.zeros_like(p))
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = orthogonalize(p.grad.lerp(buf, group["momentum"]))  # Nesterov
                p.add_(update, alpha=-group["lr"] * max(1.0, p.size(0) / p.size(1)) ** 0.5)


def make_optimizers(model: GPT) -> list[torch.optim.Optimizer]:
    matrices = [p for p in model.blocks.parameters() if p.ndim == 2]
    adam = torch.optim.Adam(
        [dict(params=[model.embed.weight], lr=EMBED_LR), dict(params=[model.head.weight], lr=HEAD_LR)],
        betas=ADAM_BETAS, eps=1e-10,
    )
    optimizers = [adam, Muon(matrices, lr=MATRIX_LR, momentum=MUON_MOMENTUM)]
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    return optimizers


def lr_multiplier(progress: float) -> float:
    """LR schedule over the fraction of the time budget used so far."""
    if WARMUP_FRACTION > 0 and progress < WARMUP_FRACTION:
        return progress / WARMUP_FRACTION
    if progress > 1.0 - COOLDOWN_FRACTION:
        left = (1.0 - progress) / COOLDOWN_FRACTION
        return FINAL_LR_FRACTION + (1.0 - FINAL_LR_FRACTION) * max(0.0, left)
    return 1.0


# ---------------------------------------------------------------------------
# Training


def peak_memory_mb() -> float:
    if DEVICE == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def save_checkpoint(path: str, model: nn.Module, config: dict, dataset_name: str) -> None:
    tmp = f"{path}.tmp"
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"config": config, "state_dict": state, "dataset": dataset_name}, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind


def main() -> int:
    t_start = time.time()
    torch.manual_seed(SEED)
    if DEVICE == "cpu":
        torch.set_num_threads(CPU_THREADS)
    if DEVICE == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for whatever runs outside autocast
    data = load_dataset()
    train_tokens = data.train_tokens
    config = dict(
        vocab_size=data.vocab_size, depth=DEPTH, width=WIDTH, head_dim=HEAD_DIM, mlp_ratio=MLP_RATIO,
        seq_len=max(SEQ_LEN, EVAL_SEQ_LEN), rope_base=ROPE_BASE, logit_softcap=LOGIT_SOFTCAP,
    )
    model = build_model(config).to(DEVICE)
    num_params = sum(p.numel() for p in model.parameters())
    step_model = torch.compile(model) if COMPILE else model
    optimizers = make_optimizers(model)
    autocast = torch.autocast(device_type=DEVICE, dtype=torch.bfloat16, enabled=DEVICE == "cuda")
    generator = torch.Generator().manual_seed(SEED)
    tokens_per_step = BATCH_SIZE * SEQ_LEN
    print(f"device: {DEVICE}  params: {num_params / 1e6:.2f}M  budget: {TIME_BUDGET:.0f}s  "
          f"dataset: {data.name} ({train_tokens.numel():,} train tokens)", flush=True)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, train_tokens.numel() - SEQ_LEN - 1, (BATCH_SIZE,), generator=generator)
        window = torch.stack([train_tokens[s : s + SEQ_LEN + 1] for s in starts.tolist()])
        return window[:, :-1].to(DEVICE, non_blocking=True), window[:, 1:].to(DEVICE, non_blocking=True)

    end = "\r" if sys.stdout.isatty() else "\n"
    training_seconds = 0.0
    step = 0
    last_print = 0.0
    smooth_loss = None
    while training_seconds < TIME_BUDGET:
        t0 = time.time()
        progress = training_seconds / TIME_BUDGET
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_multiplier(progress)
        x, y = next_batch()
        with autocast:
            logits = step_model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        loss_value = loss.item()  # also waits for the GPU, so the step time below is real
        if not math.isfinite(loss_value) or loss_value > MAX_LOSS:
            print(f"\nFAIL: training diverged at step {step}: loss {loss_value}", flush=True)
            return 1
        dt = time.time() - t0
        # torch.compile spends the first step compiling; that is start-up, not training.
        if not (COMPILE and step == 0):
            training_seconds += dt
        step += 1
        smooth_loss = loss_value if smooth_loss is None else 0.9 * smooth_loss + 0.1 * loss_value
        if time.time() - last_print >= PROGRESS_INTERVAL_S:
            last_print = time.time()
            done = min(training_seconds / TIME_BUDGET, 1.0)
            print(f"step {step:5d} | loss {smooth_loss:.4f} | {tokens_per_step / dt:8.0f} tok/s | "
                  f"{100 * done:5.1f}% | {max(TIME_BUDGET - training_seconds, 0):5.1f}s left", end=end, flush=True)
    if end == "\r":
        print()

    checkpoint = os.environ.get("AR_CHECKPOINT")
    if checkpoint:
        save_checkpoint(checkpoint, model, config, data.name)
    val_bpb = evaluate_bpb(model, data.val_tokens, data.token_bytes, DEVICE)
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {training_seconds:.1f}")
    print(f"total_seconds:    {time.time() - t_start:.1f}")
    print(f"peak_memory_mb:   {peak_memory_mb():.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {num_params / 1e6:.2f}")
    print(f"tokens_per_sec:   {step * tokens_per_step / max(training_seconds, 1e-9):.0f}")
    print(f"device:           {DEVICE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
