"""Forecast next year's sunspot number with a small neural network (numpy only).

The agent edits this file. prepare.py holds the data, the held-out split and
the scoring, and is fixed. One run trains for a fixed number of steps (about
a second on a laptop CPU); its seed comes from AR_SEED when set, so repeated
runs measure how much the result moves by chance alone.
"""

import os
import time

import numpy as np

import prepare

HISTORY_LENGTH = 16  # years of history the network sees (a solar cycle is about 11)
HIDDEN_WIDTH = 32  # units per hidden layer
DEPTH = 1  # hidden layers
LEARNING_RATE = 0.003  # Adam step size
WEIGHT_DECAY = 0.0001  # decoupled (AdamW) weight decay
BETA1 = 0.9  # Adam's first-moment decay
BETA2 = 0.999  # Adam's second-moment decay
BATCH_SIZE = 32  # windows per step
TRAIN_STEPS = 1500  # optimiser steps: fixed work, so every run takes the same time
SEED = 0  # used when AR_SEED is not set


def init(rng, sizes):
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        params.append(rng.normal(0.0, 1.0 / np.sqrt(fan_in), (fan_in, fan_out)))
        params.append(np.zeros(fan_out))
    return params


def forward(params, inputs):
    """The output and every layer's activation (for the backward pass)."""
    activations = [inputs]
    h = inputs
    for i in range(0, len(params) - 2, 2):
        h = np.tanh(h @ params[i] + params[i + 1])
        activations.append(h)
    return h @ params[-2] + params[-1], activations


def gradients(params, inputs, targets):
    out, activations = forward(params, inputs)
    delta = 2.0 * (out[:, 0] - targets)[:, None] / len(targets)
    grads = [None] * len(params)
    for layer in range(len(params) // 2 - 1, -1, -1):
        h = activations[layer]
        grads[2 * layer] = h.T @ delta
        grads[2 * layer + 1] = delta.sum(axis=0)
        if layer:
            delta = (delta @ params[2 * layer].T) * (1.0 - h**2)
    return grads


def train(seed):
    rng = np.random.default_rng(seed)
    inputs, targets = prepare.training_windows(HISTORY_LENGTH)
    params = init(rng, [HISTORY_LENGTH] + [HIDDEN_WIDTH] * DEPTH + [1])
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    for step in range(1, TRAIN_STEPS + 1):
        batch = rng.integers(0, len(inputs), BATCH_SIZE)
        for p, g, m, v in zip(params, gradients(params, inputs[batch], targets[batch]), first, second):
            m *= BETA1
            m += (1 - BETA1) * g
            v *= BETA2
            v += (1 - BETA2) * g * g
            p -= LEARNING_RATE * ((m / (1 - BETA1**step)) / (np.sqrt(v / (1 - BETA2**step)) + 1e-8) + WEIGHT_DECAY * p)
        if step % 500 == 0:
            loss = np.mean((forward(params, inputs)[0][:, 0] - targets) ** 2)
            print(f"step {step}/{TRAIN_STEPS} train_mse {loss:.5f}", flush=True)
    return params


def main():
    seed = int(os.environ.get("AR_SEED", SEED))
    started = time.time()
    params = train(seed)
    forecasts = forward(params, prepare.held_out_inputs(HISTORY_LENGTH))[0][:, 0] * prepare.SCALE
    prepare.finish(forecasts, training_seconds=time.time() - started)


if __name__ == "__main__":
    main()
