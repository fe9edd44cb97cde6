"""Small shared helpers (atomic file writes, seeding)."""
from prunekit.utils.io import atomic_write, atomic_save_torch, check_overwrite
from prunekit.utils.seed import seed_everything

__all__ = ["atomic_write", "atomic_save_torch", "check_overwrite", "seed_everything"]
