"""The MLflow record: the schema (every name, spelled once), the store, the runs a training
writes, their checkpoints, the queries that read them back, and the model registry."""
