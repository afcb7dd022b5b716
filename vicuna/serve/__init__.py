"""Answering prompts: the engines (py, ct2), batch inference, the chatbot, the API, decoding
options and stops."""
