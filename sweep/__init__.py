"""Hyperparameter sweeps of the 2017 "Understanding LSTM in Tensorflow (MNIST)" tutorial."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) would bury the sweep's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
