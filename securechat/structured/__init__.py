"""Structured outputs and tool calls, inside the worker: schemas and tools become grammars that constrain each
token, and the tool calls a model writes are parsed back into OpenAI's shapes."""
