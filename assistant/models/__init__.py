"""Getting models: the catalog, what fits this computer, reading GGUF headers, what is
installed, and downloads from the Hugging Face Hub (its API and its cache on disk).

Nothing here imports ``assistant.chat``: a model does not know who talks to it.
"""
