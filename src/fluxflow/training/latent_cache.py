"""``--cache_latents``: the frozen VAE's latent distributions and the frozen text encoder's outputs, on disk.

Stage 2 re-encodes images that never change at every step; the cache encodes each once. Stored are the VAE
posterior's moments (mean | log-variance, as ``DiagonalGaussianDistribution`` takes them), so every step still
draws its own latent with the step's generator (exact resume holds), for the image and, with
``--random_flip``, its mirror; and the text encoder's ``(embeds, pooled, mask)`` per distinct caption.

Format: safetensors shards (memory-mapped when read: no decoding per sample) plus ``manifest.json``, in
``<cache_dir>/<fingerprint>/``. The fingerprint hashes everything that determines the contents (VAE and
text encoder weights, every record's file identity and caption, the transforms, buckets, tokenizer, maximum
length), so a changed input gets a new cache and an unchanged one is reused. A cache is built under a
temporary name by every process for its share and renamed once complete; a folder without a valid manifest,
or with a shard that does not match it, is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..atomic import atomic_path, write_text_atomically
from .data.collate import tokenize_captions
from .data.dataset import MAX_SUBSTITUTES, ImageCaptionDataset, load_sample
from .data.hub import caption_text
from .data.images import BadSample
from .data.skips import DataError
from .flow_objective import TextEmbeddingCache

logger = logging.getLogger("fluxflow.train")

VERSION = 1
SHARD_SAMPLES = 512  # samples per shard file: a shard is held in memory while it is built
ENCODE_BATCH = 16


def default_cache_dir() -> Path:
    """``$FLUXFLOW_CACHE`` or ``~/.cache/fluxflow``, plus ``latents/``."""
    return Path(os.environ.get("FLUXFLOW_CACHE", Path.home() / ".cache" / "fluxflow")) / "latents"


# ------------------------------------------------------------------------------------------ fingerprint
def fingerprint(dataset: ImageCaptionDataset, vae, text_encoder, tokenizer, max_length: int) -> str:
    """A hash of everything the cache's contents depend on (``text_encoder=None``: latents only)."""
    h = hashlib.sha256(f"fluxflow-latent-cache-{VERSION}".encode())
    _hash_model(h, vae)
    if text_encoder is not None:
        _hash_model(h, text_encoder)
        h.update(json.dumps([getattr(tokenizer, "name_or_path", ""), len(tokenizer), max_length,
                             sorted(tokenizer.get_vocab().items())]).encode())
    t = dataset.transform
    h.update(json.dumps([t.img_size, t.channels, t.random_flip, t.interpolation, dataset.max_pixels,
                         dataset.buckets, dataset.bucket_of]).encode())
    for i in range(len(dataset.records)):
        cell, caption_cell, name = dataset.records.raw(i)
        h.update(json.dumps([name, _identity(cell), caption_cell], default=str).encode())
    return h.hexdigest()[:24]


def _hash_model(h, model) -> None:
    public = {k: v for k, v in model.config.items() if not k.startswith("_")}  # "_use_default_values": set order
    h.update(type(model).__name__.encode() + json.dumps(public, default=str, sort_keys=True).encode())
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().float().cpu().contiguous().numpy().tobytes())


def _identity(cell) -> object:
    """What identifies an image cell: a file's path, size and time; the bytes' hash."""
    if isinstance(cell, dict):
        data = cell.get("bytes")
        return hashlib.sha1(data).hexdigest() if data else _identity(cell.get("path"))
    if isinstance(cell, (bytes, bytearray)):
        return hashlib.sha1(cell).hexdigest()
    if isinstance(cell, str) and os.path.exists(cell):
        st = os.stat(cell)
        return [cell, st.st_size, st.st_mtime_ns]
    return repr(cell)


# ------------------------------------------------------------------------------------------------ build
def build_or_open(accelerator, root: Path, dataset: ImageCaptionDataset, vae, text_encoder, tokenizer,
                  max_length: int) -> CachedLatentDataset:
    """The cached data set for ``dataset``: reused when a complete cache with this fingerprint exists, else
    built (every process its share of the records) and then opened."""
    key = fingerprint(dataset, vae, text_encoder, tokenizer, max_length)
    folder, tmp = root / key, root / f".{key}.fluxflow.tmp"
    ready = _complete(folder) if accelerator.is_main_process else None
    ready = _broadcast(accelerator, ready)
    if ready:
        logger.info("latent cache: reusing %s (%d samples)", folder, ready["samples"])
    else:
        if accelerator.is_main_process:
            for stale in (folder, tmp):  # a damaged cache or a build a kill interrupted
                shutil.rmtree(stale, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        _build_share(accelerator, tmp, dataset, vae, text_encoder, tokenizer, max_length)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _finish(tmp, folder, dataset)
        accelerator.wait_for_everyone()
        logger.info("latent cache: built %s", folder)
    return CachedLatentDataset(dataset, folder, with_text=text_encoder is not None)


def _broadcast(accelerator, value):
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box)
    return box[0]


@torch.no_grad()
def _build_share(accelerator, tmp: Path, dataset: ImageCaptionDataset, vae, text_encoder, tokenizer,
                 max_length: int) -> None:
    """Encode records ``i`` with ``i % processes == process index`` into this process's shards."""
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(dataset.records), world))
    plain = replace(dataset.transform, random_flip=False, random_crop=False)
    tensors, bad, shard = {}, [], 0
    flip = dataset.transform.random_flip
    by_size: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = {}
    bar = tqdm(mine, desc="caching latents", disable=not accelerator.is_local_main_process)
    for n, i in enumerate(bar, 1):
        try:
            image, _ = load_sample(*dataset.records.raw(i), plain, dataset.max_pixels, np.random.default_rng(0),
                                   dataset.size_of(i))
        except BadSample as err:
            bad.append(i)
            dataset.skips.record(err, i)
        else:
            pending = by_size.setdefault(tuple(image.shape), [])
            pending.append((i, image))
            if len(pending) == ENCODE_BATCH:
                tensors.update(_encode_images(vae, by_size.pop(tuple(image.shape)), flip))
        if len(tensors) >= SHARD_SAMPLES * (2 if flip else 1) or n == len(mine):
            for group in list(by_size.values()):
                tensors.update(_encode_images(vae, group, flip))
            by_size.clear()
            _write_shard(tmp / f"shard-{rank:05d}-{shard:05d}.safetensors", tensors)
            tensors, shard = {}, shard + 1
    if text_encoder is not None:
        _write_shard(tmp / f"text-{rank:05d}.safetensors",
                     _encode_captions(text_encoder, tokenizer, max_length, _captions(dataset, mine)))
    write_text_atomically(tmp / f"bad-{rank:05d}.json", json.dumps(bad))


def _encode_images(vae, group: list[tuple[int, torch.Tensor]], flip: bool) -> dict[str, torch.Tensor]:
    """``{"<i>.moments": [2C, h, w]}`` (and ``"<i>.flipped"``) for a batch of same-size images."""
    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    x = torch.stack([image for _, image in group]).to(device, dtype)
    out = {f"{i}.moments": m for (i, _), m in zip(group, _moments(vae, x))}
    if flip:
        out.update({f"{i}.flipped": m for (i, _), m in zip(group, _moments(vae, torch.flip(x, dims=[-1])))})
    return out


def _moments(vae, x: torch.Tensor) -> torch.Tensor:
    dist = vae.encode(x).latent_dist
    return torch.cat([dist.mean, dist.logvar], dim=1).float().cpu().contiguous()


def _captions(dataset: ImageCaptionDataset, records: list[int]) -> list[str]:
    """Every caption the records can give (each entry of a list caption), and the empty prompt (CFG)."""
    found = {""}
    for i in records:
        cell = dataset.records.raw(i)[1]
        for value in cell if isinstance(cell, (list, tuple)) else [cell]:
            if text := caption_text(value):
                found.add(text)
    return sorted(found)


def _encode_captions(text_encoder, tokenizer, max_length: int, captions: list[str]) -> dict[str, torch.Tensor]:
    """``{"text.<hash>.embeds|pooled|mask": ...}`` through the trainer's :class:`TextEmbeddingCache` (each caption
    encoded on its own, as the pipeline would)."""
    device = next(text_encoder.parameters()).device
    embeds, pooled, mask = TextEmbeddingCache(text_encoder, tokenizer, max_length)(captions, device)
    out = {}
    for i, caption in enumerate(captions):
        key = caption_key(caption)
        out.update({f"{key}.embeds": embeds[i].float().cpu().contiguous(),
                    f"{key}.pooled": pooled[i].float().cpu().contiguous(), f"{key}.mask": mask[i].cpu().contiguous()})
    return out


def caption_key(caption: str) -> str:
    return "text." + hashlib.sha1(caption.encode("utf-8")).hexdigest()


def _write_shard(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def _finish(tmp: Path, folder: Path, dataset: ImageCaptionDataset) -> None:
    """The captions, then the manifest (each shard's size, the bad records) make the folder a complete cache;
    then the rename."""
    records = len(dataset.records)
    write_text_atomically(tmp / "captions.json", json.dumps([dataset.records.raw(i)[1] for i in range(records)]))
    shards = {p.name: p.stat().st_size for p in sorted(tmp.glob("*.safetensors"))}
    bad = sorted(i for p in tmp.glob("bad-*.json") for i in json.loads(p.read_text()))
    write_text_atomically(tmp / "manifest.json", json.dumps(
        {"version": VERSION, "records": records, "samples": records - len(bad), "bad": bad, "shards": shards},
        indent=1))
    os.replace(tmp, folder)


def _complete(folder: Path) -> dict | None:
    """The manifest of a complete, undamaged cache folder, else ``None`` (it will be rebuilt)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("version") != VERSION or \
                len(json.loads((folder / "captions.json").read_text())) != manifest["records"]:
            raise ValueError("another version, or captions that do not match")
        for name, size in manifest["shards"].items():
            path = folder / name
            if path.stat().st_size != size:
                raise ValueError(f"{name} has {path.stat().st_size} bytes, not {size}")
            with safe_open(str(path), framework="pt"):
                pass
        return manifest
    except Exception:  # noqa: BLE001 -- missing, partial or damaged: rebuild
        if folder.exists():
            logger.warning("latent cache: %s is incomplete or damaged; rebuilding it", folder)
        return None


# ------------------------------------------------------------------------------------------------- read
class CachedLatentDataset(torch.utils.data.Dataset):
    """The records of ``dataset`` as cached moments (and text outputs): the same samples, captions and flips
    in the same order as the images would be, since the per-sample generator is seeded alike."""

    def __init__(self, dataset: ImageCaptionDataset, folder: Path, with_text: bool):
        self.base, self.folder, self.with_text = dataset, folder, with_text
        manifest = json.loads((folder / "manifest.json").read_text())
        self.bad = set(manifest["bad"])
        self.captions = json.loads((folder / "captions.json").read_text())  # no record is read per sample
        self.shards = sorted(manifest["shards"])
        self.where: dict[str, str] = {}
        for name in self.shards:
            with safe_open(str(folder / name), framework="pt") as f:
                self.where.update(dict.fromkeys(f.keys(), name))
        self._open: dict[str, object] = {}  # per process (and DataLoader worker): memory-mapped shards

    def __len__(self) -> int:
        return len(self.base)

    @property
    def bucket_of(self):
        return self.base.bucket_of

    @property
    def skips(self):
        return self.base.skips

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def tensor(self, key: str) -> torch.Tensor:
        name = self.where[key]
        if name not in self._open:
            self._open[name] = safe_open(str(self.folder / name), framework="pt")
        return self._open[name].get_tensor(key)

    def __getitem__(self, index: int) -> dict:
        base, n = self.base, len(self.base.records)
        rng = np.random.default_rng([base.seed, base.epoch, index])
        for attempt in range(min(n, MAX_SUBSTITUTES)):
            j = (index + attempt) % n
            if j in self.bad:
                continue
            caption = caption_text(self.captions[j], rng)
            flipped = base.transform.random_flip and rng.random() < 0.5
            item = {"moments": self.tensor(f"{j}.{'flipped' if flipped else 'moments'}"), "captions": caption}
            if self.with_text:
                key = caption_key(caption)
                item.update({name: self.tensor(f"{key}.{name}") for name in ("embeds", "pooled", "mask")})
            return item
        raise DataError(f"no cached sample in the {min(n, MAX_SUBSTITUTES)} records from index {index}")

    def null_text(self) -> tuple[torch.Tensor, ...]:
        """The empty prompt's ``(embeds, pooled, mask)``: the condition a dropped caption trains on."""
        key = caption_key("")
        return tuple(self.tensor(f"{key}.{name}") for name in ("embeds", "pooled", "mask"))

    def __getstate__(self) -> dict:  # DataLoader workers open their own memory maps
        return {**self.__dict__, "_open": {}}


@dataclass
class CachedCollator:
    """A batch of cached samples: tensors stacked, captions as a list, and tokens when the text is not cached
    (a trained text encoder encodes them at each step)."""

    tokenizer: object
    max_length: int = 77

    def __call__(self, samples: list[dict]) -> dict:
        batch = {key: [s[key] for s in samples] if key == "captions" else torch.stack([s[key] for s in samples])
                 for key in samples[0]}
        if "embeds" not in batch:
            batch["input_ids"], batch["attention_mask"] = tokenize_captions(self.tokenizer, batch["captions"],
                                                                           self.max_length)
        return batch


def sample_latents(moments: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A latent from cached moments, drawn exactly as ``vae.encode(x).latent_dist.sample(generator)`` draws it."""
    return DiagonalGaussianDistribution(moments).sample(generator=generator)
