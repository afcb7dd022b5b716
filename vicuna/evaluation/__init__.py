"""Scoring the models: held-out losses, predictions and MMLU."""
