"""The finetuning corpus: download, ShareGPT flattening, long conversations split, the data report."""
