"""Fashion-MNIST: the whole system on real photos, offline, judged by a classifier trained on the real data.

    python benchmarks/fashion.py [--out outputs/fashion] [--train_images N] [--vae_steps N]
                                 [--flow_steps 500 1000 2000 4000] [--per_class N] [--seed 0] [--tiny]

1. **Data** (``fluxflow.datasets.fashion_mnist``; Debian's ``dataset-fashion-mnist``, or ``--data_dir`` /
   ``$FLUXFLOW_FASHION_MNIST``): the first ``--train_images`` training photos (the IDX order is shuffled already)
   and the test photos as captioned folders ``<out>/data/{train,test}``: grey 32-px PNGs, the 28-px photo padded
   by 2 px of its black background (exact pixels, no resampling; 32 is what the VAE's 4x and the flow's 2x2
   patches divide), captions from the class name in five phrasings ("a photo of a sneaker", "a sneaker", ...).
2. **Judge**: a small CNN (16/32/64 channels, 64 features) trained on the whole real training split, cached as
   ``<out>/judge.pt``; its test accuracy is reported (it should be >= 0.88 for its verdicts to mean much).
3. **Training** through ``fluxflow-train`` subprocesses with the recipe ``benchmarks/fashion.yaml``: the VAE
   stage, then the flow stage in segments ending at each ``--flow_steps`` point (``--resume_from_checkpoint
   latest``; a constant learning rate, so a segment's end is what a run of that length gives). CPU time of each
   subprocess (``getrusage(RUSAGE_CHILDREN)``, user + system over all its threads) and wall time.
4. **Quality**: the VAE's PSNR/SSIM on test photos (posterior mode, SPADE context; torchmetrics); at each flow
   point ``--per_class`` images per class prompt ("a photo of a <class>", the same noise at every point), the
   judge's class accuracy on them (prompt adherence) and the Fréchet distance between the judge's features of
   them and of the test photos (an offline stand-in for FID: torchmetrics' ``FrechetInceptionDistance`` with the
   judge as its feature extractor), beside reference rows of as many images: real training photos (the floor,
   finite-sample bias), their VAE reconstructions (what a flow can reach through this VAE) and the same photos
   blurred (far).
5. **Output**: ``<out>/results.md`` (printed), ``<out>/results.json``, ``<out>/fashion_grid.png`` (a row per
   class: its name, a real test photo, images generated at the last point).

Run again, it continues where it stopped (same ``--out``; more ``--flow_steps`` points extend the flow run).
Full: about 30 minutes on 2 idle cores (estimated from a short run), about 50 with ``--threads 1``; ``--tiny``:
under a minute (the CI smoke run; numbers meaningless).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import bundled_tokenizer, machine, table, write_results  # noqa: E402

from fluxflow.datasets import fashion_mnist as fm  # noqa: E402

RECIPE = Path(__file__).resolve().with_name("fashion.yaml")
# test_images: the Fréchet reference (and data/test); vae_images: the first ones, for PSNR/SSIM
FULL = {"train_images": 60000, "test_images": 10000, "vae_images": 2000, "vae_steps": 1500,
        "flow_steps": [500, 1000, 2000, 4000], "per_class": 50, "judge_images": 60000, "judge_epochs": 4,
        "sample_steps": 16, "guidance": 4.0, "val_samples": 64, "log_every": 50}
TINY = {"train_images": 160, "test_images": 200, "vae_images": 100, "vae_steps": 3, "flow_steps": [2, 4],
        "per_class": 3, "judge_images": 2000, "judge_epochs": 1, "sample_steps": 2, "guidance": 4.0,
        "val_samples": 8, "log_every": 1}
FULL_TIME, TINY_TIME = "about 30 minutes on 2 idle cores (50 with --threads 1)", "under a minute"
BLUR_SIGMA = 1.5  # px, the "far" reference


# ------------------------------------------------------------------------------------------------ data

def to_model(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` photos -> ``[N, 1, 32, 32]`` in [-1, 1], padded exactly as the exported PNGs."""
    return torch.from_numpy(fm.pad32(images)).float().div(127.5).sub(1).unsqueeze(1)


def export_data(out: Path, plan: dict, folder) -> Path:
    """``out/train`` and ``out/test`` as captioned image folders (skipped when already written for this plan)."""
    marker = out / "done.json"
    want = {"train_images": plan["train_images"], "test_images": plan["test_images"]}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return out
    shutil.rmtree(out, ignore_errors=True)
    for split, n in (("train", plan["train_images"]), ("test", plan["test_images"])):
        images, labels = fm.load_split(split, folder)
        fm.export_folder(out / split, images[:n], labels[:n])
    marker.write_text(json.dumps(want))
    return out


def blur(x: torch.Tensor, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """A separable Gaussian blur of ``[N, 1, H, W]`` images (reflected borders)."""
    r = int(3 * sigma + 0.5)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


# ------------------------------------------------------------------------------------------------ judge

class Judge(nn.Module):
    """A small CNN classifier of 32-px grey photos in [-1, 1]; ``features`` (before the last layer) feed the
    Fréchet distance."""

    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        layers, c = [], 1
        for i, w in enumerate((*widths, widths[-1])):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            layers += [nn.MaxPool2d(2)] if i < len(widths) else [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            c = w
        self.features, self.head = nn.Sequential(*layers), nn.Linear(c, 10)
        self.num_features = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class JudgeFeatures(nn.Module):
    """The judge's features of ``[N, C, H, W]`` images in [0, 1], as torchmetrics' FID feeds a custom extractor."""

    def __init__(self, judge: Judge):
        super().__init__()
        self.judge, self.num_features = judge, judge.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.judge.features(images.mean(1, keepdim=True) * 2 - 1)


def train_judge(path: Path, plan: dict, seed: int, folder) -> tuple[Judge, dict]:
    """The judge trained on the real training photos (AdamW, one-cycle LR, random flips), or the cached one."""
    settings = {"images": plan["judge_images"], "epochs": plan["judge_epochs"], "seed": seed}
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved["info"]["settings"] == settings:
            judge = Judge()
            judge.load_state_dict(saved["state_dict"])
            return judge.eval(), saved["info"]
    cpu, wall = time.process_time(), time.perf_counter()
    images, labels = fm.load_split("train", folder)
    x, y = to_model(images[:settings["images"]]), torch.from_numpy(labels[:settings["images"]]).long()
    torch.manual_seed(seed)
    judge, gen, batch = Judge(), torch.Generator().manual_seed(seed), 128
    opt = torch.optim.AdamW(judge.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 4e-3, total_steps=settings["epochs"] * (len(x) // batch))
    for _ in range(settings["epochs"]):
        judge.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x) - batch + 1, batch):
            idx = order[i:i + batch]
            flip = (torch.rand(batch, generator=gen) < 0.5).view(-1, 1, 1, 1)
            loss = F.cross_entropy(judge(torch.where(flip, x[idx].flip(-1), x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    judge.eval()
    test_x, test_y = fm.load_split("test", folder)
    accuracy = float((predict(judge, to_model(test_x)) == torch.from_numpy(test_y)).float().mean())
    info = {"settings": settings, "test_accuracy": accuracy, "test_images": len(test_y),
            "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}
    torch.save({"state_dict": judge.state_dict(), "info": info}, path)
    return judge, info


@torch.no_grad()
def predict(judge: Judge, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """The judge's class of each image."""
    return torch.cat([judge(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


# ------------------------------------------------------------------------------------------------ training

def fluxflow_train(config: Path, flags: list[str], log: Path) -> dict:
    """One ``fluxflow-train`` subprocess with this process's torch threads; its CPU time (user + system of the
    child and its threads, from RUSAGE_CHILDREN) and wall time."""
    exe = Path(sys.executable).with_name("fluxflow-train")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "fluxflow.cli.train"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    before, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        rc = subprocess.run([*cmd, "--config", str(config), *flags], stdout=f, stderr=subprocess.STDOUT,
                            env=env).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"fashion: fluxflow-train failed ({rc}); see {log}")
    return {"cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "wall_s": time.perf_counter() - wall}


def stage_config(index: int, steps: int, path: Path) -> Path:
    """Stage ``index`` of the recipe as a single-run config file: its top level, the stage's keys, and
    ``max_train_steps`` in place of the stage's transition."""
    spec = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    stage = {k: v for k, v in spec["stages"][index].items() if k not in ("name", "transition")}
    config = {k: v for k, v in spec.items() if k != "stages"} | stage | {"max_train_steps": steps}
    path.write_text(f"# stage {index + 1} of {RECIPE.name}\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def common_flags(out: Path, data: Path, plan: dict, seed: int) -> list[str]:
    """Data, held-out photos (validation), seed, logging and output flags of both stages."""
    return ["--data_path", str(data / "train"), "--captions_file", str(data / "train" / "captions.txt"),
            "--validation_data_path", str(data / "test"), "--max_validation_samples", str(plan["val_samples"]),
            "--seed", str(seed), "--log_interval", str(plan["log_every"]), "--tokenizer_name",
            bundled_tokenizer(), "--output_path", str(out)]


def train_vae(out: Path, data: Path, plan: dict, seed: int) -> dict:
    """The recipe's VAE stage, ``vae_steps`` long (a finished run in ``out`` is reused)."""
    record = out / "timing.json"
    if record.is_file():
        return json.loads(record.read_text())
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    timing = fluxflow_train(stage_config(0, plan["vae_steps"], out.parent / "vae.yaml"),
                            common_flags(out, data, plan, seed), out.parent / "vae.log")
    check_finished(out, plan["vae_steps"])
    record.write_text(json.dumps(timing))
    return timing


def train_flow_to(out: Path, data: Path, vae: Path, step: int, plan: dict, seed: int) -> dict:
    """The recipe's flow stage continued to ``step`` (a new run for the first point, then resumed)."""
    resume = ["--resume_from_checkpoint", "latest"] if (out / "state").is_dir() else []
    flags = [*common_flags(out, data, plan, seed), "--model_checkpoint", str(vae), "--cache_dir",
             str(out.parent / "cache"), *resume]
    timing = fluxflow_train(stage_config(1, step, out.parent / "flow.yaml"), flags, out.parent / "flow.log")
    check_finished(out, step)
    return timing


def check_finished(run: Path, step: int) -> None:
    """Stop unless the run in ``run`` ended at ``step`` (a stop signal ends a run early, with exit status 0)."""
    end = run / "logs" / "run_end.json"
    if not end.is_file() or json.loads(end.read_text()).get("step") != step:
        raise SystemExit(f"fashion: {run} stopped before step {step}; run the benchmark again to continue")


def held_out_flow_loss(run: Path, step: int) -> float | None:
    """``val/flow/loss`` (the run's validation on the test photos) logged at ``step``."""
    from fluxflow.training.metrics import read_metrics

    rows = [r for r in read_metrics(run / "logs" / "metrics.jsonl") if r["step"] == step and "val/flow/loss" in r]
    return rows[-1]["val/flow/loss"] if rows else None


# ------------------------------------------------------------------------------------------------ quality

class Scorer:
    """The judge's class accuracy and the Fréchet distance to the test photos' judge features of image sets."""

    def __init__(self, judge: Judge, test: torch.Tensor):
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.judge = judge
        self.fid = FrechetInceptionDistance(feature=JudgeFeatures(judge), reset_real_features=False, normalize=True)
        for i in range(0, len(test), 500):
            self.fid.update((test[i:i + 500] + 1) / 2, real=True)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> dict:
        right = predict(self.judge, x) == labels
        self.fid.reset()
        for i in range(0, len(x), 500):
            self.fid.update((x[i:i + 500].clamp(-1, 1) + 1) / 2, real=False)
        per_class = [float(right[labels == c].float().mean()) for c in range(10)]
        return {"accuracy": float(right.float().mean()), "per_class": per_class, "fd": float(self.fid.compute())}


@torch.no_grad()
def reconstruct(vae, x: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """The VAE's reconstructions (posterior mode, SPADE context) of grey ``x``, as grey images in [-1, 1]."""
    channels = vae.config.in_channels
    return torch.cat([vae(x[i:i + batch].expand(-1, channels, -1, -1)).sample.float().clamp(-1, 1).mean(1, True)
                      for i in range(0, len(x), batch)])


def vae_quality(vae, test: torch.Tensor) -> dict:
    """Mean PSNR and SSIM (torchmetrics, images in [0, 1]) of the VAE's reconstructions of the test photos."""
    from fluxflow.training.validation import image_scores

    scores = image_scores((reconstruct(vae, test) + 1) / 2, (test + 1) / 2)
    return {"psnr": float(scores["psnr"].mean()), "ssim": float(scores["ssim"].mean()), "images": len(test)}


@torch.no_grad()
def generate(pipe, per_class: int, plan: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` images for each class prompt, grey ``[10 * per_class, 1, 32, 32]`` in [-1, 1], and labels;
    the noise of image i of class c comes from seed ``100000 * seed + 1000 * c + i`` at every point."""
    images = []
    for c in range(10):
        for start in range(0, per_class, 50):
            n = min(50, per_class - start)
            gens = [torch.Generator().manual_seed(100000 * seed + 1000 * c + i) for i in range(start, start + n)]
            out = pipe([fm.class_prompt(c)] * n, height=32, width=32, num_inference_steps=plan["sample_steps"],
                       guidance_scale=plan["guidance"], generator=gens, output_type="np").images
            images.append(torch.from_numpy(out).permute(0, 3, 1, 2).mean(1, keepdim=True) * 2 - 1)
    return torch.cat(images), torch.arange(10).repeat_interleave(per_class)


def class_balanced(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` photos of each class, class by class."""
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])


def write_grid(path: Path, generated: torch.Tensor, per_class: int, real: torch.Tensor, title: str,
               cols: int = 8) -> None:
    """One row per class: its name, a real test photo, then up to ``cols`` generated images (64 px each)."""
    from PIL import Image, ImageDraw

    def tile(x):
        return Image.fromarray(((x[0] + 1) * 127.5).round().clamp(0, 255).byte().numpy(), "L").resize((64, 64))

    cols, left, top = min(cols, per_class), 110, 20
    grid = Image.new("L", (left + 70 * (cols + 1), top + 70 * 10), 255)
    draw = ImageDraw.Draw(grid)
    draw.text((left + 14, 4), "real", fill=0)
    draw.text((left + 76, 4), title, fill=0)
    for c in range(10):
        draw.text((4, top + 70 * c + 28), fm.CLASS_NAMES[c], fill=0)
        grid.paste(tile(real[c]), (left, top + 70 * c + 3))
        for j in range(cols):
            grid.paste(tile(generated[c * per_class + j]), (left + 70 * (j + 1) + 6, top + 70 * c + 3))
    grid.save(path)


# ------------------------------------------------------------------------------------------------ the curve

def flow_points(out: Path, data: Path, plan: dict, seed: int, scorer: Scorer) -> dict[int, dict]:
    """Train the flow stage to each ``flow_steps`` point in turn and score the exported pipeline there; every
    point is recorded in ``out/points.json`` as soon as it is trained and again when scored."""
    from fluxflow import FluxFlowPipeline

    path = out / "points.json"
    records = {int(k): v for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}
    for step in plan["flow_steps"]:
        if step not in records:
            if records and step < max(records):
                raise SystemExit(f"fashion: {out / 'flow'} is past step {step} already; use a new --out")
            records[step] = train_flow_to(out / "flow", data, out / "vae" / "checkpoint.safetensors", step, plan,
                                          seed)
            path.write_text(json.dumps(records, indent=1))
        if "quality" not in records[step]:
            pipe = FluxFlowPipeline.from_pretrained(out / "flow" / "pipeline")
            pipe.set_progress_bar_config(disable=True)
            start = time.perf_counter()
            images, labels = generate(pipe, plan["per_class"], plan, seed)
            records[step] |= {"quality": scorer(images, labels), "eval_s": time.perf_counter() - start,
                              "val_flow_loss": held_out_flow_loss(out / "flow", step)}
            torch.save(images, out / "flow" / f"generated-{step}.pt")
            path.write_text(json.dumps(records, indent=1))
        print(f"  flow step {step}: class accuracy {records[step]['quality']['accuracy']:.3f}, Fréchet distance "
              f"{records[step]['quality']['fd']:.2f} (segment {records[step]['cpu_s']:.0f} CPU s, "
              f"{records[step]['wall_s']:.0f} s wall)", flush=True)
    return {s: records[s] for s in plan["flow_steps"]}


# ------------------------------------------------------------------------------------------------ report

def report(s: dict) -> str:
    """The Markdown of ``results.md``: settings, the judge and the VAE, reference rows, the curve, per class."""
    plan, refs, points, judge, vae = s["plan"], s["references"], s["points"], s["judge"], s["vae"]
    far = refs["blurred"]["fd"]
    lines = [f"# Fashion-MNIST benchmark ({s['kind']} run, {s['date']})", "", f"Command: `{s['command']}`  ",
             f"Machine: {s['machine']}  ",
             f"Data: {plan['train_images']:,} training photos (32 px grey, class captions); recipe "
             f"benchmarks/fashion.yaml, VAE {plan['vae_steps']:,} steps.  ",
             f"Judge: CNN trained on {judge['settings']['images']:,} training photos, {judge['settings']['epochs']} "
             f"epochs ({judge['cpu_s'] / 60:.1f} CPU min): test accuracy **{judge['test_accuracy']:.3f}** on "
             f"{judge['test_images']:,} test photos.  ",
             f"VAE on {vae['quality']['images']:,} test photos: PSNR **{vae['quality']['psnr']:.2f} dB**, SSIM "
             f"**{vae['quality']['ssim']:.3f}** (training {vae['cpu_s'] / 60:.1f} CPU min, {vae['wall_s'] / 60:.1f} "
             "min wall).", "",
             f"## Reference rows ({10 * plan['per_class']} images each; Fréchet distance between the judge's "
             f"features of them and of {plan['test_images']:,} test photos)", ""]
    names = {"real": "real training photos", "recon": "their VAE reconstructions",
             "blurred": f"the same photos blurred (Gaussian, sigma {BLUR_SIGMA} px)"}
    lines += [table(["images", "class accuracy (judge)", "Fréchet distance", "relative to blurred"],
                    [[names[k], f"{r['accuracy']:.3f}", f"{r['fd']:.2f}", f"{r['fd'] / far:.3f}"]
                     for k, r in refs.items()]), ""]
    rows = [[f"{step:,}", f"{p['train_cpu_s'] / 60:.1f}", f"{p['train_wall_s'] / 60:.1f}",
             "-" if p["val_flow_loss"] is None else f"{p['val_flow_loss']:.4f}", f"{p['quality']['accuracy']:.3f}",
             f"{p['quality']['fd']:.2f}", f"{p['quality']['fd'] / far:.3f}"] for step, p in points.items()]
    lines += [f"## Generated images against training time ({plan['per_class']} per class prompt \"a photo of a "
              f"<class>\", {plan['sample_steps']} Euler steps, guidance {plan['guidance']:g}; train time: VAE + flow "
              "so far, the fluxflow-train subprocesses with their start-ups)", "",
              table(["flow steps", "train CPU min", "train wall min", "held-out flow loss", "class accuracy",
                     "Fréchet distance", "relative to blurred"], rows), "",
              "## Class accuracy per prompt (the judge's verdict on the generated images)", ""]
    rows = [[name, f"{refs['real']['per_class'][c]:.2f}", *(f"{p['quality']['per_class'][c]:.2f}"
                                                           for p in points.values())]
            for c, name in enumerate(fm.CLASS_NAMES)]
    return "\n".join([*lines, table(["class", "real photos", *(f"{step:,} steps" for step in points)], rows)])


# ------------------------------------------------------------------------------------------------ main

def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/fashion[_tiny])")
    for name, what in (("train_images", "training photos, the first N of the split"), ("vae_steps", "VAE optimizer steps"),
                       ("per_class", "generated images per class prompt")):
        parser.add_argument(f"--{name}", type=int, default=None, metavar="N",
                            help=f"{what} (default {FULL[name]:,}; tiny {TINY[name]:,})")
    parser.add_argument("--flow_steps", type=int, nargs="+", default=None, metavar="STEP",
                        help="flow steps at which to evaluate, the last one the flow stage's length (default "
                             f"{' '.join(map(str, FULL['flow_steps']))}; tiny "
                             f"{' '.join(map(str, TINY['flow_steps']))})")
    parser.add_argument("--seed", type=int, default=0, help="training, judge and sampling seed (default 0)")
    parser.add_argument("--data_dir", default=None,
                        help=f"folder of the IDX files (default ${fm.ENV_VAR}, else {fm.DEFAULT_DIR})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads here and in the training subprocesses (default torch's; --tiny: 1). "
                             "On a shared 2-core machine 1 is steadier: with 2, a busy other core stalls every "
                             "parallel kernel")
    parser.add_argument("--tiny", action="store_true",
                        help=f"the CI smoke run, {TINY_TIME} (numbers meaningless); the full run takes {FULL_TIME}")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    saved = torch.get_num_threads()
    torch.set_num_threads(args.threads or (1 if args.tiny else saved))  # the subprocesses get the same
    try:
        return run(args, argv)
    except fm.FashionMNISTMissingError as err:
        raise SystemExit(f"fashion: {err}") from None
    finally:
        torch.set_num_threads(saved)


def run(args: argparse.Namespace, argv) -> int:
    """The benchmark: data, judge, VAE, reference rows, the flow points, then the report."""
    plan = dict(TINY if args.tiny else FULL)
    plan.update({k: getattr(args, k) for k in ("train_images", "vae_steps", "flow_steps", "per_class")
                 if getattr(args, k) is not None})
    plan["flow_steps"] = sorted(set(plan["flow_steps"]))
    out = args.out or Path("outputs/fashion_tiny" if args.tiny else "outputs/fashion")
    out.mkdir(parents=True, exist_ok=True)
    fixed, saved = {k: v for k, v in plan.items() if k != "flow_steps"} | {"seed": args.seed}, out / "plan.json"
    if saved.is_file() and json.loads(saved.read_text()) != fixed:
        raise SystemExit(f"fashion: {out} holds a run with other settings ({saved}); use a new --out")
    saved.write_text(json.dumps(fixed, indent=1))
    began, kind = time.perf_counter(), "tiny" if args.tiny else "full" if plan == FULL else "custom"
    print(f"fashion: {kind} run into {out}; {machine()}", flush=True)

    data = export_data(out / "data", plan, args.data_dir)
    judge, judge_info = train_judge(out / "judge.pt", plan, args.seed, args.data_dir)
    print(f"judge: test accuracy {judge_info['test_accuracy']:.3f} ({judge_info['cpu_s']:.0f} CPU s)", flush=True)
    if judge_info["test_accuracy"] < 0.88 and not args.tiny:
        print("fashion: WARNING: the judge's test accuracy is below 0.88; its verdicts are weak", flush=True)
    vae_timing = train_vae(out / "vae", data, plan, args.seed)
    from fluxflow.models import FluxFlowVAE

    vae = FluxFlowVAE.from_pretrained(out / "vae" / "vae").eval()
    test_x, test_y = fm.load_split("test", args.data_dir)
    test = to_model(test_x[:plan["test_images"]])
    vae_q = vae_quality(vae, test[:plan["vae_images"]])
    print(f"VAE: test PSNR {vae_q['psnr']:.2f} dB, SSIM {vae_q['ssim']:.3f} ({vae_timing['cpu_s']:.0f} CPU s)",
          flush=True)
    scorer = Scorer(judge, test)
    train_x, train_y = fm.load_split("train", args.data_dir)
    idx = class_balanced(train_y[:plan["train_images"]], plan["per_class"])
    real, labels = to_model(train_x[idx]), torch.from_numpy(train_y[idx]).long()
    references = {"real": scorer(real, labels), "recon": scorer(reconstruct(vae, real), labels),
                  "blurred": scorer(blur(real), labels)}
    points = flow_points(out, data, plan, args.seed, scorer)
    cpu, wall = vae_timing["cpu_s"], vae_timing["wall_s"]
    for p in points.values():  # cumulative: the VAE, then the flow segments so far
        cpu, wall = cpu + p["cpu_s"], wall + p["wall_s"]
        p |= {"train_cpu_s": cpu, "train_wall_s": wall}
    last = max(points)
    write_grid(out / "fashion_grid.png", torch.load(out / "flow" / f"generated-{last}.pt"), plan["per_class"],
               to_model(test_x[class_balanced(test_y, 1)]),
               f'generated for "a photo of a <class>" after {last:,} flow steps')
    command = " ".join(["python", "benchmarks/fashion.py", *(sys.argv[1:] if argv is None else argv)])
    summary = {"kind": kind, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(), "command": command,
               "plan": plan, "judge": judge_info, "vae": {**vae_timing, "quality": vae_q}, "references": references,
               "points": points}
    text = report(summary)
    (out / "results.md").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
    write_results(out, "fashion", summary, began)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
