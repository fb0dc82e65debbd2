"""The OpenAI dialect (/v1): chat completions, embeddings, models, files and batches, translated to the
native Foundation Models calls (so the same deployment serves the cloud, a Hybrid install and the
emulator). Plain data in and out: the `openai` package is never imported here."""
