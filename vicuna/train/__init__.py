"""Finetuning with OpenNMT-py: the finetune config, training, resuming, TensorBoard events and the curves."""
