"""The Optuna side: study files (`spec`, `space`), the storage, the study and its objective,
budgets (`--timeout`, `--max-images`), and many workers on one study."""
