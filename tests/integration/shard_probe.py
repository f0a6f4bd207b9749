"""Run under torchrun: one epoch of the training data path under Accelerate; each process writes the captions
of each batch it saw.

    shard_probe.py DATA OUT BATCH [stream]    (stream: --dataset_name imagefolder --streaming, as the trainer)
"""

import json
import sys

from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from transformers import AutoTokenizer

from fluxflow.training.data import CaptionCollator, DataConfig, build_dataset, make_dataloader, prepare_dataloader
from fluxflow.training.tokenizer import bundled_text_model

if __name__ == "__main__":
    data, out, batch, stream = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:] == ["stream"]
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(  # as the trainer sets it
        dispatch_batches=False if stream else None))
    source = {"dataset_name": "imagefolder", "streaming": True, "shuffle_buffer_size": 4} if stream else {}
    dataset = build_dataset(DataConfig(data_path=data, img_size=32, seed=0, **source),
                            process_index=accelerator.process_index, num_processes=accelerator.num_processes)
    loader = make_dataloader(dataset, batch, 0, CaptionCollator(AutoTokenizer.from_pretrained(bundled_text_model())),
                             seed=0)
    loader = prepare_dataloader(accelerator, loader)
    batches = [batch["captions"] for batch in loader]
    with open(f"{out}/rank{accelerator.process_index}.json", "w", encoding="utf-8") as f:
        json.dump(batches, f)
