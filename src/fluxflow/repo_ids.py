"""Telling a Hub repo id from a local path, without importing anything heavy (checks run before models load)."""

from __future__ import annotations


def is_repo_id(name: str) -> bool:
    """Whether ``name`` is a valid Hub repo id (``org/name``): what loading tries on the Hub when it is no path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(str(name))
    except HFValidationError:
        return False
    return True
