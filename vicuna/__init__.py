"""Shared logic of the Vicuna workflow's scripts: one small module per idea."""
