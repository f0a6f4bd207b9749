"""Training data: captions-file folders, `datasets` sources (Hub, local, streaming, imagefolder), transforms,
bad-file handling and the tokenizing collate function. See docs/DATA.md.

    cfg = DataConfig(data_path="data/shapes/train", img_size=64)  # an imagefolder with metadata.jsonl
    dataset = build_dataset(cfg)                      # (pixel_values [C,H,W] in [-1, 1], caption) items
    loader = make_dataloader(dataset, batch_size=8, workers=2, collate_fn=CaptionCollator(tokenizer, 77))
"""

from fluxflow.training.data.buckets import BucketBatchSampler, bucket_sizes, nearest_bucket
from fluxflow.training.data.build import build_dataset, is_streaming
from fluxflow.training.data.collate import CaptionCollator, tokenize_captions
from fluxflow.training.data.config import DataConfig
from fluxflow.training.data.dataset import ImageCaptionDataset, StreamingImageCaptionDataset
from fluxflow.training.data.folder import read_captions_file
from fluxflow.training.data.images import (
    BAD_KINDS,
    BadSample,
    check_image,
    convert_channels,
    image_file_problem,
    open_image,
)
from fluxflow.training.data.loader import make_dataloader, prepare_dataloader
from fluxflow.training.data.skips import DataError, SkipLog
from fluxflow.training.data.transforms import ImageTransform

__all__ = [
    "BAD_KINDS", "BadSample", "BucketBatchSampler", "CaptionCollator", "DataConfig", "DataError",
    "ImageCaptionDataset", "ImageTransform", "SkipLog", "StreamingImageCaptionDataset", "bucket_sizes",
    "build_dataset", "check_image", "convert_channels", "image_file_problem", "is_streaming", "make_dataloader",
    "nearest_bucket", "open_image", "prepare_dataloader", "read_captions_file", "tokenize_captions",
]
