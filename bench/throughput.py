"""Training throughput of the tutorial recipe, ours against references, side by side in one run.

    python bench/throughput.py [--steps 799] [--rounds 8] [--data-dir DIR]

Each implementation trains the tutorial configuration (num_units 128, batch 128, Adam 1e-3) on
the same MNIST batches in the same order for the same number of steps:
  ours      the trainer every trial runs (sweep.train.Trainer), with the native backend (the
            compiled op) and with the keras backend (keras.layers.LSTM in the same loop), so
            the op's gain is measured beside the stock layer's
  tf1       the tutorial's own graph: TF1 session, feed_dict, 28 unrolled BasicLSTMCell steps
  keras     keras.layers.LSTM + model.fit
  torch     PyTorch nn.LSTM (only when torch is installed: pip install torch)
Each one first builds and takes the first step (graph building or tracing: the "first step"
column). The remaining steps run in rounds, the implementations taking turns on the same
batches, so a slow spell of this shared machine hits all of them alike; samples/s is the
median over the rounds, and the ratio is our native backend / this (above 1: it is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sweep.console import QUIET_ENVIRONMENT

os.environ.update(QUIET_ENVIRONMENT)  # before TensorFlow is imported

from sweep.training.config import TrainConfig
from sweep.training.data import Mnist, load_mnist
from sweep.training.model import Backend, cores
from sweep.training.train import Trainer, batch_order, steps_per_call

CONFIG = TrainConfig()
Steps = Callable[[np.ndarray], None]  # trains on these batches (rows of indices), in order


def ours(backend: str, chains: int) -> Callable[[Mnist, int], Steps]:
    def make(mnist: Mnist, total_steps: int) -> Steps:
        trainer = Trainer(CONFIG, total_steps, mnist.train, Backend(backend, chains))

        def steps(batches: np.ndarray) -> None:
            per_call = steps_per_call(CONFIG.batch_size)  # as sweep.train.train calls it
            for start in range(0, len(batches), per_call):
                trainer.steps(batches[start : start + per_call])

        return steps

    return make


def tf1(mnist: Mnist, total_steps: int) -> Steps:
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, 28, 28])
        y = v1.placeholder(tf.int64, [None])
        units = CONFIG.num_units
        kernel = v1.get_variable("kernel", [28 + units, 4 * units], initializer=v1.glorot_uniform_initializer())
        bias = v1.get_variable("bias", [4 * units], initializer=v1.zeros_initializer())
        h = c = tf.zeros([tf.shape(x)[0], units])
        for xt in tf.unstack(x, 28, axis=1):  # static_rnn over BasicLSTMCell
            i, j, f, o = tf.split(tf.matmul(tf.concat([xt, h], 1), kernel) + bias, 4, axis=1)
            c = c * tf.sigmoid(f + CONFIG.forget_bias) + tf.sigmoid(i) * tf.tanh(j)
            h = tf.tanh(c) * tf.sigmoid(o)
        w = v1.Variable(v1.random_normal([units, 10]))
        b = v1.Variable(v1.random_normal([10]))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tf.matmul(h, w) + b))
        opt = v1.train.AdamOptimizer(CONFIG.learning_rate).minimize(loss)
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)

    def steps(batches: np.ndarray) -> None:
        for idx in batches:
            session.run(opt, {x: mnist.train.x[idx], y: mnist.train.y[idx]})

    return steps


def keras_lstm(mnist: Mnist, total_steps: int) -> Steps:
    import keras

    model = keras.Sequential([keras.Input((28, 28)), keras.layers.LSTM(CONFIG.num_units), keras.layers.Dense(10)])
    model.compile(
        keras.optimizers.Adam(CONFIG.learning_rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )

    def steps(batches: np.ndarray) -> None:  # one fit() per round, as a user would call it
        order = batches.ravel()
        model.fit(
            mnist.train.x[order], mnist.train.y[order], batch_size=CONFIG.batch_size, epochs=1, verbose=0, shuffle=False
        )

    return steps


def torch_lstm(mnist: Mnist, total_steps: int) -> Steps | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    lstm, head = torch.nn.LSTM(28, CONFIG.num_units, batch_first=True), torch.nn.Linear(CONFIG.num_units, 10)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=CONFIG.learning_rate)
    x, y = torch.from_numpy(mnist.train.x), torch.from_numpy(mnist.train.y)

    def steps(batches: np.ndarray) -> None:
        for idx in batches:
            index = torch.from_numpy(idx)
            opt.zero_grad()
            out, _ = lstm(x[index])
            torch.nn.functional.cross_entropy(head(out[:, -1]), y[index]).backward()
            opt.step()

    return steps


def implementations(chains: int) -> dict[str, Callable[[Mnist, int], Steps | None]]:
    return {
        "ours, native backend": ours("native", chains),
        "ours, keras backend": ours("keras", chains),
        "tf1 graph (tutorial)": tf1,
        "keras.layers.LSTM + fit": keras_lstm,
        "torch nn.LSTM": torch_lstm,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=CONFIG.train_steps)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument(
        "--chains", type=int, default=cores(), help="our trainer's chains (default: the CPUs this process may use)"
    )
    p.add_argument("--only", help="comma-separated words: run only the implementations whose names contain one")
    p.add_argument(
        "--data-dir",
        default=os.environ.get("SWEEP_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data/mnist"),
    )
    args = p.parse_args()
    mnist = load_mnist(args.data_dir)
    batches = batch_order(len(mnist.train.y), CONFIG.batch_size, args.steps, CONFIG.seed)

    runners, first_step, every = {}, {}, implementations(args.chains)
    if args.only:
        every = {name: make for name, make in every.items() if any(word in name for word in args.only.split(","))}
    for name, make in every.items():
        started = time.perf_counter()
        runner = make(mnist, args.steps)
        if runner is not None:
            runner(batches[:1])
            runners[name], first_step[name] = runner, time.perf_counter() - started
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for chunk in np.array_split(batches[1:], args.rounds):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner(chunk)
            rates[name].append(chunk.size / (time.perf_counter() - started))

    median = {name: statistics.median(r) for name, r in rates.items()}
    mine = median.get("ours, native backend", float("nan"))
    print(
        f"tutorial recipe, {args.steps} steps of batch {CONFIG.batch_size}, {args.rounds} rounds, {cores()} CPUs, "
        f"{args.chains} chains"
    )
    print(
        f"{'implementation':26} {'samples/s':>10} {'(rounds min-max)':>17} {'build+step 1':>13} {'native / this':>14}"
    )
    for name in every:
        if name not in runners:
            print(f"{name:26} {'(not installed)':>10}")
            continue
        spread = f"{min(rates[name]):.0f}-{max(rates[name]):.0f}"
        print(f"{name:26} {median[name]:10.0f} {spread:>17} {first_step[name]:12.1f}s {mine / median[name]:13.2f}x")


if __name__ == "__main__":
    main()
