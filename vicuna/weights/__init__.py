"""Model weights and their files: shapes, layouts, name maps, tensor readers and writers,
conversion, checkpoints, LoRA, the tokenizer, the reference model and the Hugging Face export."""
