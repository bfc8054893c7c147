"""Hyperparameter sweeps of the 2017 "Understanding LSTM in Tensorflow (MNIST)" tutorial.

The flow, package by package: `training` trains one configuration (data, model, the LSTM op,
the loop, evaluation, checkpoints); `search` is the Optuna side (study files, the study and its
objective, budgets, many workers); `tracking` is the MLflow record; `seeds` trains one
configuration again with other seeds or its own (baseline, confirm, reproduce); `report` turns
the stores into tables, prose and plots. `cli`, `commands` and `console` sit on top.
"""
