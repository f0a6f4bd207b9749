"""Run under torchrun: one epoch of the training data path under Accelerate; each process writes what it saw."""

import json
import sys

from accelerate import Accelerator
from transformers import AutoTokenizer

from fluxflow.training.data import CaptionCollator, DataConfig, build_dataset, make_dataloader
from fluxflow.training.tokenizer import bundled_text_model

if __name__ == "__main__":
    data, out = sys.argv[1], sys.argv[2]
    accelerator = Accelerator(cpu=True)
    dataset = build_dataset(DataConfig(data_path=data, img_size=32, seed=0), process_index=accelerator.process_index,
                            num_processes=accelerator.num_processes)
    loader = make_dataloader(dataset, 2, 0, CaptionCollator(AutoTokenizer.from_pretrained(bundled_text_model())),
                             seed=0)
    loader = accelerator.prepare(loader)
    seen = [[caption, round(float(image.sum()), 3)]
            for batch in loader for caption, image in zip(batch["captions"], batch["pixel_values"])]
    with open(f"{out}/rank{accelerator.process_index}.json", "w", encoding="utf-8") as f:
        json.dump(seen, f)
