"""A plain nanoGPT-style baseline, the yardstick the default train.py must beat.

Width 128, depth 2, 4 heads, context 128, learned positions, LayerNorm, GELU,
tied embeddings, AdamW with warm-up and cosine decay over the time budget (its
learning rate and batch picked from three tries, below, so it is not a straw man). It
trains on the same prepared data (the 2048-token BPE of nanochat/prepare.py)
for the same wall-clock budget and is scored by the same evaluate_bpb. Its
context is 128 tokens, so it reads each 256-token evaluation window as two
128-token halves; that is how it would be scored with its own context.

    AR_TIME_BUDGET=60 python bench/yardstick_nanogpt.py [--seed N]
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the same thread policy as train.py, for a fair race
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nanochat"))
from prepare import evaluate_bpb, load_dataset  # noqa: E402

WIDTH, DEPTH, HEADS, CONTEXT = 128, 2, 4, 128
# The best of the three settings tried at 60 s on this CPU (seed 1): lr 1e-3 with
# batch 32 reached 3.19 bpb, 3e-3 with 16 reached 2.85, 6e-3 with 16 reached 2.86.
BATCH, LR, WEIGHT_DECAY, WARMUP_FRACTION = 16, 3e-3, 0.1, 0.05


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.qkv, self.proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class NanoGPT(nn.Module):
    def __init__(self, vocab_size):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, WIDTH)
        self.pos = nn.Embedding(CONTEXT, WIDTH)
        self.blocks = nn.Sequential(*[Block() for _ in range(DEPTH)])
        self.ln_f = nn.LayerNorm(WIDTH)
        self.apply(self._init)

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx):
        if idx.size(1) > CONTEXT:  # longer windows are read in CONTEXT-sized pieces
            return torch.cat([self(piece) for piece in idx.split(CONTEXT, dim=1)], dim=1)
        x = self.tok(idx) + self.pos(torch.arange(idx.size(1)))
        return self.ln_f(self.blocks(x)) @ self.tok.weight.T  # tied output embedding


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args()
    seed, lr, batch = args.seed, args.lr, args.batch
    budget = float(os.environ.get("AR_TIME_BUDGET", 60))
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # as train.py
    data = load_dataset()
    model = NanoGPT(data.vocab_size)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": other, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(seed)
    tokens = data.train_tokens
    elapsed, steps = 0.0, 0
    while elapsed < budget:
        t0 = time.time()
        progress = elapsed / budget
        scale = progress / WARMUP_FRACTION if progress < WARMUP_FRACTION else 0.5 * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        starts = torch.randint(0, tokens.numel() - CONTEXT - 1, (batch,), generator=generator).tolist()
        window = torch.stack([tokens[s : s + CONTEXT + 1] for s in starts])
        logits = model(window[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), window[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        elapsed += time.time() - t0
        steps += 1
    val_bpb = evaluate_bpb(model, data.val_tokens, data.token_bytes)
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {elapsed:.1f}")
    print(f"num_steps:        {steps}")
    print(f"num_params_M:     {sum(p.numel() for p in model.parameters()) / 1e6:.2f}")
    print(f"tokens_per_sec:   {steps * batch * CONTEXT / elapsed:.0f}")


if __name__ == "__main__":
    main()
