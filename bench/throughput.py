"""Training throughput of the tutorial recipe, ours against references, side by side in one run.

    python bench/throughput.py [--steps 799] [--data-dir DIR]

Each implementation trains the tutorial configuration (num_units 128, batch 128, Adam 1e-3) on
the same MNIST batches in the same order for the same number of steps, one after another on
this machine; the table gives training samples/s and each one's ratio to ours:
  ours      sweep.train.train, the code every trial runs (also shown with its first step,
            which traces the graph, included)
  tf1       the tutorial's own graph: TF1 session, feed_dict, 28 unrolled BasicLSTMCell steps
  keras     keras.layers.LSTM + model.fit
  torch     PyTorch nn.LSTM (only when torch is installed: pip install torch)
samples/s counts the steps after the first (which builds or traces the graph).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


import sweep  # noqa: E402, F401  (quiet TensorFlow start-up)
from sweep.data import load_mnist  # noqa: E402
from sweep.train import TrainConfig, batch_order, train  # noqa: E402

CONFIG = TrainConfig()


def timed_steps(step, batches) -> float:
    """Samples/s over all batches but the first, which traces or builds."""
    step(batches[0])
    started = time.perf_counter()
    for b in batches[1:]:
        step(b)
    return sum(len(b) for b in batches[1:]) / (time.perf_counter() - started)


def ours(mnist, steps: int) -> tuple[float, float]:
    """(samples/s after the first step, samples/s of the whole trial including tracing)."""
    result = train(TrainConfig(train_steps=steps, eval_every=steps), mnist)
    steady = (steps - 1) * CONFIG.batch_size / (result.train_seconds - result.first_step_seconds)
    return steady, result.samples_per_second


def tf1(mnist, batches) -> float:
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
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            return timed_steps(lambda idx: session.run(opt, {x: mnist.train.x[idx], y: mnist.train.y[idx]}), batches)


def keras_lstm(mnist, batches) -> float:
    import keras

    model = keras.Sequential([keras.Input((28, 28)), keras.layers.LSTM(CONFIG.num_units), keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(CONFIG.learning_rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    order = batches.ravel()
    x, y = mnist.train.x[order], mnist.train.y[order]
    first = CONFIG.batch_size
    model.fit(x[:first], y[:first], batch_size=first, epochs=1, verbose=0)  # builds and traces
    started = time.perf_counter()
    model.fit(x[first:], y[first:], batch_size=first, epochs=1, verbose=0, shuffle=False)
    return (len(order) - first) / (time.perf_counter() - started)


def torch_lstm(mnist, batches) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    lstm, head = torch.nn.LSTM(28, CONFIG.num_units, batch_first=True), torch.nn.Linear(CONFIG.num_units, 10)
    params = [*lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=CONFIG.learning_rate)
    x, y = torch.from_numpy(mnist.train.x), torch.from_numpy(mnist.train.y)

    def step(idx):
        index = torch.from_numpy(idx)
        opt.zero_grad()
        out, _ = lstm(x[index])
        torch.nn.functional.cross_entropy(head(out[:, -1]), y[index]).backward()
        opt.step()

    return timed_steps(step, batches)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=CONFIG.train_steps)
    p.add_argument("--data-dir", default=os.environ.get("SWEEP_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data/mnist"))
    args = p.parse_args()
    mnist = load_mnist(args.data_dir)
    batches = batch_order(len(mnist.train.y), CONFIG.batch_size, args.steps, CONFIG.seed)
    steady, whole = ours(mnist, args.steps)
    results = {"ours (sweep.train)": steady, "ours, incl. tracing": whole}
    results["tf1 graph (tutorial)"] = tf1(mnist, batches)
    results["keras.layers.LSTM + fit"] = keras_lstm(mnist, batches)
    results["torch nn.LSTM"] = torch_lstm(mnist, batches)
    mine = results["ours (sweep.train)"]
    print(f"tutorial recipe, {args.steps} steps of batch {CONFIG.batch_size}, {os.cpu_count()} CPUs")
    print(f"{'implementation':26} {'samples/s':>10} {'ours / this':>12}")
    for name, rate in results.items():
        if rate is None:
            print(f"{name:26} {'(not installed)':>10}")
        else:
            print(f"{name:26} {rate:10.0f} {mine / rate:11.2f}x")


if __name__ == "__main__":
    main()
