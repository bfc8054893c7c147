"""Training one configuration, top to bottom: the recipe (`config`), MNIST (`data`), the model and
its backends (`model`, the `lstm_op`), the loop (`train`, reporting through `hooks`), evaluation
and checkpoints. Only `config` and `checkpoint` can be imported without TensorFlow."""
