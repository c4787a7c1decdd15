"""The architecture and hyperparameter search: an Optuna study under one search envelope."""
