"""Fuzz of fluxflow-train's up-front checks: malformed flags, flag combinations and config files.

Every case runs the real command line (``main(argv)``) on a real small data folder and must return 2 with a
``fluxflow-train: error:`` (no traceback) that names the offending flag, key path or file, report exactly the
problems it planted, leave no trace of training, and come back at once. The trainer module is replaced by a
stub that fails the test when called: every mistake has to be caught before a model, an Accelerator or a
data loader is built, not by a traceback halfway into the first step.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
import types
from dataclasses import dataclass, field

import pytest
from data_helpers import safetensors_bytes

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset

SECONDS = 2.0  # per case; validation reads a few small files, it builds nothing


class ReachedTraining(AssertionError):
    """The config was accepted: the trainer was called."""


@dataclass(frozen=True)
class Case:
    """One malformed run: flags after the base ones, the files it needs, what its error must name.

    ``{data}`` (the valid data folder) and ``{tmp}`` (the case's own folder) are filled into ``argv``,
    ``names`` and text file contents. ``files`` maps a name under ``{tmp}`` to its text or bytes, or to
    ``None`` for a folder. ``vae``: add ``--train_vae`` so that a training mode is given.
    """

    argv: str
    names: tuple[str, ...]
    files: dict = field(default_factory=dict)
    vae: bool = True
    problems: int = 1
    read_only: str | None = None  # a folder under {tmp} made read-only (0o555)


def case(id: str, argv: str, *names: str, **kw):
    return pytest.param(Case(argv, names, **kw), id=id)


def yaml_case(id: str, text: str | bytes, *names: str, named: bool = True, **kw):
    """``--config {tmp}/run.yaml`` holding ``text``; the error names the file too, unless the problem is
    between options (found after merging the file with the command line: it names the flags)."""
    file_name = ("run.yaml",) if named else ()
    return case(id, "--config {tmp}/run.yaml", *file_name, *names, files={"run.yaml": text}, **kw)


def json_case(id: str, text: str, *names: str, **kw):
    return case(id, "--config {tmp}/run.json", "run.json", *names, files={"run.json": text}, **kw)


def optim_case(id: str, text: str, *names: str, **kw):
    """``--optim_sched_config {tmp}/optim.yaml`` holding ``text``."""
    return case(id, "--optim_sched_config {tmp}/optim.yaml", "optim.yaml", *names, files={"optim.yaml": text},
                **kw)


def _png(size: int = 16) -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.effect_noise((size, size), 64).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


TINY_PNG = _png()
TINY_VAE = {"block_out_channels": [16, 32, 32, 32], "latent_channels": 4, "layers_per_block": 1,
            "attention_head_dim": 16, "spade_hidden_channels": 16, "sample_size": 64}

CASES = [
    # --- flag values argparse rejects (it names the flag)
    case("batch_size-not-an-int", "--batch_size two", "--batch_size", "invalid int value"),
    case("lr-not-a-number", "--lr fast", "--lr"),
    case("lr-without-value", "--lr", "--lr", "expected one argument"),
    case("mixed_precision-bad-choice", "--mixed_precision fp8", "--mixed_precision", "'bf16'"),
    case("model_preset-bad-choice", "--model_preset huge", "--model_preset", "'tiny'"),
    case("channels-bad-choice", "--channels 2", "--channels"),
    case("resize_interpolation-bad-choice", "--resize_interpolation nearest", "--resize_interpolation"),
    case("report_to-bad-choice", "--report_to mlflow", "--report_to"),
    case("unknown-flag", "--learning_rate 1e-4", "--learning_rate"),
    case("sample_sizes-not-ints", "--sample_sizes 32 big", "--sample_sizes"),
    # --- numbers out of range, NaN and infinity
    case("batch_size-zero", "--batch_size 0", "--batch_size must be >= 1"),
    case("batch_size-negative", "--batch_size -4", "--batch_size must be >= 1"),
    case("n_epochs-zero", "--n_epochs 0", "--n_epochs"),
    case("training_steps-zero", "--training_steps 0", "--training_steps"),
    case("workers-negative", "--workers -1", "--workers"),
    case("lr-zero", "--lr 0", "--lr must be > 0"),
    case("lr-nan", "--lr nan", "--lr must be a finite number"),
    case("lr-inf", "--lr inf", "--lr must be a finite number"),
    case("kl_beta-inf", "--kl_beta inf", "--kl_beta must be a finite number"),
    case("kl_beta-negative", "--kl_beta -1", "--kl_beta must be >= 0"),
    case("max_grad_norm-nan", "--max_grad_norm nan", "--max_grad_norm"),
    case("logit_mean-minus-inf", "--logit_mean=-inf", "--logit_mean must be a finite number"),
    case("ema_decay-nan", "--ema_decay nan", "--ema_decay"),
    case("timestep_shift-zero", "--timestep_shift 0", "--timestep_shift"),
    case("cfg_dropout_prob-above-one", "--cfg_dropout_prob 1.5", "--cfg_dropout_prob"),
    case("diff_max_sigma-negative", "--diff_max_sigma=-0.1", "--diff_max_sigma"),
    case("max_nonfinite_steps-zero", "--max_nonfinite_steps 0", "--max_nonfinite_steps"),
    case("sample_sizes-not-multiple-of-16", "--sample_sizes 32 40", "--sample_sizes", "40"),
    case("sample_steps-zero", "--sample_steps 0", "--sample_steps"),
    case("flow_patch_size-3", "--flow_patch_size 3", "--flow_patch_size"),
    case("flow_mlp_ratio-zero", "--flow_mlp_ratio 0", "--flow_mlp_ratio must be >= 0.25"),
    case("flow_mlp_ratio-nan", "--flow_mlp_ratio nan", "--flow_mlp_ratio must be a finite number"),
    case("max_sequence_length-too-short", "--max_sequence_length 2", "--max_sequence_length"),
    case("vae_block_out_channels-zero", "--vae_block_out_channels 16 0", "--vae_block_out_channels"),
    case("vae_latent_channels-zero", "--vae_latent_channels 0", "--vae_latent_channels"),
    case("img_size-not-multiple-of-2x-vae-and-4x4-patches", "--train_diff_full --vae_block_out_channels 16 32 "
         "--flow_patch_size 4 --img_size 36", "the flow processor takes 4x4 patches"),
    case("img_size-too-small", "--img_size 4", "--img_size"),
    case("img_size-not-multiple-of-vae", "--img_size 36", "--img_size must be a multiple of 8"),
    case("img_size-not-multiple-of-flow-patches", "--train_diff_full --img_size 40",
         "--img_size must be a multiple of 16"),
    case("bucket_step-not-multiple-of-8", "--aspect_buckets --bucket_step 12", "--bucket_step"),
    case("max_train_samples-zero", "--max_train_samples 0", "--max_train_samples"),
    case("max_train_steps-zero", "--max_train_steps 0", "--max_train_steps"),
    case("checkpoint_save_interval-zero", "--checkpoint_save_interval 0", "--checkpoint_save_interval"),
    case("checkpoints_total_limit-zero", "--checkpoints_total_limit 0", "--checkpoints_total_limit"),
    case("shuffle_buffer_size-negative", "--shuffle_buffer_size -1", "--shuffle_buffer_size"),
    case("max_image_pixels-zero", "--max_image_pixels 0", "--max_image_pixels"),
    case("seed-negative", "--seed -1", "--seed"),
    case("dataset_split-empty", "--dataset_split ''", "--dataset_split"),
    case("no-reconstruction-loss", "--l1_weight 0 --mse_weight 0", "--l1_weight", "--mse_weight"),
    # --- modes and combinations
    case("no-training-mode", "", "no training mode", "--train_vae", vae=False),
    case("train_diff-and-train_diff_full", "--train_diff --train_diff_full", "--train_diff_full"),
    case("flow-without-a-vae", "--train_diff_full", "--model_checkpoint", vae=False),
    case("use_fp16-with-bf16", "--use_fp16 --mixed_precision bf16", "--use_fp16"),
    case("train_text_encoder-without-flow", "--train_text_encoder", "--train_text_encoder"),
    case("cache-with-trained-text-encoder", "--train_diff_full --train_text_encoder --cache_text_embeddings",
         "--cache_text_embeddings"),
    case("streaming-without-max_train_steps", "--dataset_name imagefolder --streaming", "--max_train_steps"),
    case("streaming-without-dataset_name", "--streaming --max_train_steps 5", "--dataset_name"),
    case("streaming-with-aspect_buckets", "--dataset_name imagefolder --streaming --max_train_steps 5 "
         "--aspect_buckets", "--aspect_buckets"),
    case("dataset_name-and-captions_file", "--dataset_name imagefolder --captions_file {data}/captions.txt",
         "--captions_file"),
    case("hub-dataset-with-data_path", "--dataset_name someone/shapes", "--data_path"),
    case("folder-builder-without-data_path", "--dataset_name imagefolder --data_path ''", "--data_path"),
    case("captions_file-without-data_path", "--captions_file {data}/captions.txt --data_path ''",
         "--captions_file needs --data_path"),
    case("no-data-at-all", "--data_path ''", "no training data", "--data_path"),
    # --- data, checkpoint and output paths
    case("data_path-missing", "--data_path {tmp}/nowhere", "--data_path", "{tmp}/nowhere"),
    case("data_path-is-a-file", "--data_path {tmp}/images.txt", "--data_path", "images.txt",
         files={"images.txt": "a.png\n"}),
    case("data_path-without-captions", "--data_path {tmp}/empty", "--captions_file", files={"empty": None}),
    case("captions_file-missing", "--captions_file {tmp}/captions.txt", "--captions_file",
         "{tmp}/captions.txt"),
    case("captions_file-is-a-folder", "--captions_file {tmp}/caps", "--captions_file", files={"caps": None}),
    case("model_checkpoint-missing", "--model_checkpoint {tmp}/vae.safetensors", "--model_checkpoint",
         "vae.safetensors"),
    case("model_checkpoint-text-file", "--model_checkpoint {tmp}/weights.txt", "--model_checkpoint",
         "weights.txt", files={"weights.txt": "not weights\n"}),
    case("model_checkpoint-truncated", "--model_checkpoint {tmp}/broken.safetensors", "--model_checkpoint",
         "broken.safetensors", files={"broken.safetensors": b"\x10\x00\x00"}),
    case("model_checkpoint-not-fluxflow", "--model_checkpoint {tmp}/other.safetensors", "--model_checkpoint",
         "other.safetensors", "fluxflow_components", files={"other.safetensors": safetensors_bytes()}),
    case("model_checkpoint-empty-folder", "--model_checkpoint {tmp}/run", "--model_checkpoint", "{tmp}/run",
         files={"run": None}),
    case("resume-missing-folder", "--resume_from_checkpoint {tmp}/old/checkpoint-10",
         "--resume_from_checkpoint"),
    case("resume-is-a-file", "--resume_from_checkpoint {tmp}/checkpoint-10", "--resume_from_checkpoint",
         files={"checkpoint-10": "x"}),
    case("resume-empty-folder", "--resume_from_checkpoint {tmp}/checkpoint-10", "--resume_from_checkpoint",
         "empty", files={"checkpoint-10": None}),
    case("output_path-is-a-file", "--output_path {tmp}/out.txt", "--output_path", "out.txt",
         files={"out.txt": "x"}),
    case("output_path-under-a-file", "--output_path {tmp}/out.txt/run", "--output_path", "out.txt",
         files={"out.txt": "x"}),
    case("output_path-read-only", "--output_path {tmp}/ro/run", "--output_path", "read-only",
         files={"ro": None}, read_only="ro"),
    case("test_image_address-missing", "--test_image_address {tmp}/nope.png", "--test_image_address",
         "nope.png"),
    case("test_image_address-truncated", "--test_image_address {tmp}/cut.png", "--test_image_address",
         "cut.png", "truncated", files={"cut.png": TINY_PNG[: len(TINY_PNG) // 2]}),
    case("output_path-name-too-long", "--output_path {tmp}/" + "x" * 300, "--output_path", "longer than"),
    # --- --model_checkpoint that is not fluxflow's, or asks for what no machine has
    case("model_checkpoint-other-librarys-model", "--model_checkpoint {tmp}/unet", "--model_checkpoint",
         "UNet2DModel", files={"unet": None, "unet/config.json": '{"_class_name": "UNet2DModel"}',
                               "unet/diffusion_pytorch_model.safetensors": safetensors_bytes()}),
    case("model_checkpoint-other-pipeline", "--model_checkpoint {tmp}/sd", "--model_checkpoint", "AutoencoderKL",
         files={"sd": None, "sd/vae": None, "sd/vae/config.json": '{"_class_name": "AutoencoderKL"}'}),
    case("model_checkpoint-huge-config", "--model_checkpoint {tmp}/vae", "--model_checkpoint", "GiB of weights",
         files={"vae": None, "vae/config.json": json.dumps({"_class_name": "FluxFlowVAE",
                                                            "block_out_channels": [65536] * 4}),
                "vae/diffusion_pytorch_model.safetensors": safetensors_bytes()}),
    case("model_checkpoint-absurd-setting", "--model_checkpoint {tmp}/vae", "--model_checkpoint", "10,000,000",
         files={"vae": None, "vae/config.json": json.dumps({"_class_name": "FluxFlowVAE", "layers_per_block": 10**7}),
                "vae/diffusion_pytorch_model.safetensors": safetensors_bytes()}),
    case("model_checkpoint-pickle-only", "--model_checkpoint {tmp}/vae", "--model_checkpoint", "pickled .bin",
         files={"vae": None, "vae/config.json": '{"_class_name": "FluxFlowVAE"}',
                "vae/diffusion_pytorch_model.bin": b"not read"}),
    case("img_size-not-multiple-of-the-checkpoints-vae", "--train_diff_full --img_size 40 --model_checkpoint "
         "{tmp}/vae.safetensors", "--img_size must be a multiple of 16", vae=False,
         files={"vae.safetensors": safetensors_bytes({"fluxflow_components": json.dumps({"vae": "FluxFlowVAE"}),
                                                      "fluxflow_config.vae": json.dumps(TINY_VAE)})}),
    # --- config files: unknown keys, flat and grouped
    yaml_case("yaml-unknown-key", "kl_bta: 0.1\n", "kl_bta is not an option", "'kl_beta'"),
    yaml_case("yaml-unknown-key-in-model", "model:\n  presett: tiny\n", "model.presett", "'model_preset'"),
    yaml_case("yaml-unknown-key-in-data", "data:\n  data_pth: x\n", "data.data_pth", "'data_path'"),
    json_case("json-unknown-key-in-training", '{"training": {"lrr": 1e-4}}', "training.lrr", "'lr'"),
    json_case("json-unknown-key-in-output", '{"output": {"output_dir": "runs"}}', "output.output_dir"),
    json_case("json-misspelt-section", '{"optimiser": {"vae": {"lr": 1e-4}}}', "optimiser", "'optimizers'"),
    yaml_case("yaml-group-not-a-mapping", "data: [a, b]\n", "data must be a mapping"),
    yaml_case("yaml-section-inside-a-group", "training:\n  optimizers: {vae: {lr: 1e-4}}\n",
              "training.optimizers", "top level"),
    yaml_case("yaml-config-inside-config", "config: other.yaml\n", "config is not an option"),
    # --- config files: values of the wrong type
    yaml_case("yaml-string-for-int", 'batch_size: "8"\n', "batch_size must be an integer"),
    yaml_case("yaml-quoted-number-for-float", 'training:\n  lr: "1e-4"\n', "training.lr must be a number"),
    yaml_case("yaml-list-for-float", "training:\n  kl_beta: [0.1, 0.2]\n",
              "training.kl_beta must be a number"),
    yaml_case("yaml-float-for-int", "n_epochs: 1.5\n", "n_epochs must be an integer"),
    yaml_case("yaml-bool-for-int", "data:\n  img_size: true\n", "data.img_size must be an integer"),
    yaml_case("yaml-int-for-bool", "train_vae: 1\n", "train_vae must be true or false"),
    yaml_case("yaml-string-for-list", "output:\n  sample_captions: a red square\n", "output.sample_captions"),
    yaml_case("yaml-null-for-int", "training:\n  batch_size: null\n", "training.batch_size", "null"),
    yaml_case("yaml-null-for-float", "kl_beta: null\n", "kl_beta must be a number, got null"),
    yaml_case("yaml-null-for-bool", "gan_training: ~\n", "gan_training must be true or false"),
    yaml_case("yaml-nan", "kl_beta: .nan\n", "kl_beta must be a finite number"),
    json_case("json-nan", '{"training": {"lr": NaN}}', "training.lr must be a finite number"),
    json_case("json-infinity", '{"ema_decay": Infinity}', "ema_decay must be a finite number"),
    yaml_case("yaml-bad-choice", "training:\n  mixed_precision: fp8\n", "--mixed_precision", "bf16",
              named=False),
    yaml_case("yaml-conflicting-modes", "training:\n  train_diff: true\n  train_diff_full: true\n",
              "--train_diff_full", named=False),
    yaml_case("yaml-two-problems-at-once", "batch_sise: 2\ntraining:\n  lr: fast\n", "batch_sise",
              "training.lr", problems=2),
    # --- config files that are not a mapping, not valid, not there, not text
    yaml_case("yaml-empty", "", "empty"),
    yaml_case("yaml-only-comments", "# nothing yet\n", "empty"),
    yaml_case("yaml-top-level-list", "- train_vae\n- batch_size\n", "mapping", "list"),
    yaml_case("yaml-top-level-scalar", "42\n", "mapping", "int"),
    json_case("json-top-level-list", "[1, 2]", "mapping", "list"),
    json_case("json-top-level-string", '"train"', "mapping", "str"),
    yaml_case("yaml-syntax-error", "training:\n  lr: [1e-4\n", "invalid YAML"),
    yaml_case("yaml-tab-indent", "training:\n\tlr: 1e-4\n", "invalid YAML"),
    yaml_case("yaml-unhashable-key", "? [a, b]\n: 1\n", "invalid YAML", "cannot be a key"),
    yaml_case("yaml-python-tag", "lr: !!python/object/apply:os.system [echo]\n", "invalid YAML"),
    yaml_case("yaml-duplicate-key", "batch_size: 2\nbatch_size: 4\n", "duplicate key 'batch_size'"),
    json_case("json-syntax-error", '{"lr": 1e-4,}', "invalid JSON"),
    json_case("json-duplicate-key", '{"training": {"lr": 1e-4, "lr": 2e-4}}', "duplicate key 'lr'"),
    yaml_case("config-not-utf8", b"lr: 1e-4\n# caf\xe9\n", "utf-8"),
    case("config-missing", "--config {tmp}/missing.yaml", "missing.yaml", "not found"),
    case("config-is-a-folder", "--config {tmp}/conf.yaml", "conf.yaml", files={"conf.yaml": None}),
    case("config-wrong-suffix", "--config {tmp}/run.toml", "run.toml", "unsupported file type",
         files={"run.toml": "lr = 1e-4\n"}),
    # --- optimizer / scheduler sections, in --config and in --optim_sched_config
    yaml_case("optimizer-unknown-type", "optimizers:\n  vae: {type: Adamm}\n", "optimizers.vae.type",
              "AdamW"),
    yaml_case("scheduler-unknown-type", "schedulers:\n  vae: {type: CosineLR}\n", "schedulers.vae.type",
              "CosineAnnealingLR"),
    yaml_case("optimizer-negative-lr", "optimizers:\n  vae: {lr: -1e-4}\n", "optimizers.vae.lr must be > 0"),
    yaml_case("optimizer-unknown-component", "optimizers:\n  unet: {lr: 1e-4}\n", "optimizers.unet",
              "components:"),
    yaml_case("optimizer-betas-length", "optimizers:\n  vae: {betas: [0.9]}\n", "optimizers.vae.betas"),
    yaml_case("optimizer-key-of-another-type", "optimizers:\n  flow: {type: Lion, eps: 1.0e-8}\n",
              "optimizers.flow.eps"),
    yaml_case("optimizers-not-a-mapping", "optimizers: 5\n", "optimizers must be a mapping"),
    yaml_case("schedulers-and-scheduler_config", "schedulers:\n  vae: {type: LinearLR}\n"
              "scheduler_config:\n  vae: {type: StepLR}\n", "scheduler_config"),
    json_case("optimizer-nan-lr", '{"optimizers": {"vae": {"lr": NaN}}}', "optimizers.vae.lr",
              "finite"),
    optim_case("scheduler-negative-eta_min_factor",
               "schedulers:\n  vae: {type: CosineAnnealingLR, eta_min_factor: -1}\n",
               "schedulers.vae.eta_min_factor"),
    optim_case("scheduler-chain-without-length", "schedulers:\n  vae:\n    - {type: LinearLR}\n"
               "    - {type: CosineAnnealingLR}\n", "schedulers.vae[0].total_iters"),
    optim_case("scheduler-plateau-in-a-chain", "schedulers:\n  vae:\n    - {type: LinearLR, total_iters: 5}\n"
               "    - {type: ReduceLROnPlateau}\n", "schedulers.vae[1]", "ReduceLROnPlateau"),
    optim_case("optim-file-misspelt-section", "optimisers:\n  vae: {lr: 1e-4}\n", "optimisers",
               "'optimizers'"),
    optim_case("optim-file-empty", "", "empty"),
    case("optim-file-missing", "--optim_sched_config {tmp}/optim.yaml", "--optim_sched_config", "optim.yaml"),
    case("optim-file-and-sections-in-config", "--optim_sched_config {tmp}/optim.yaml --config {tmp}/run.yaml",
         "--optim_sched_config", "--config",
         files={"optim.yaml": "schedulers:\n  vae: {type: LinearLR}\n",
                "run.yaml": "schedulers:\n  vae: {type: StepLR}\n"}),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A valid imagefolder (PNG + metadata.jsonl + captions.txt); the modules validation imports, loaded."""
    import fluxflow.models  # noqa: F401  (the preset sizes: img_size checks)
    import fluxflow.pipelines.single_file  # noqa: F401  (checkpoint headers)

    return write_shapes_dataset(tmp_path_factory.mktemp("fuzz") / "shapes", 8, size=32, seed=0) / "train"


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """Replace the trainer: reaching it means the config got through the checks."""
    def train(cfg, optim_config=None, stop=None):
        raise ReachedTraining("the config was accepted and handed to the trainer")

    stub = types.ModuleType("fluxflow.training.trainer")
    stub.train = train
    monkeypatch.setitem(sys.modules, "fluxflow.training.trainer", stub)


def base_argv(data, out) -> list[str]:
    return ["--data_path", str(data), "--model_preset", "tiny", "--img_size", "32", "--workers", "0",
            "--output_path", str(out)]


def test_the_base_run_is_valid(data, tmp_path):
    """Without a planted mistake the same command line reaches the trainer: each case fails for its own."""
    for out in (tmp_path / "out", tmp_path):  # a new or an existing output folder
        with pytest.raises(ReachedTraining):
            main([*base_argv(data, out), "--train_vae"])


def test_a_fluxflow_checkpoint_header_is_accepted(data, tmp_path):
    """The checkpoint check reads the header only and accepts a file with fluxflow metadata."""
    path = tmp_path / "vae.safetensors"
    path.write_bytes(safetensors_bytes({"fluxflow_components": json.dumps({"vae": "FluxFlowVAE"})}))
    with pytest.raises(ReachedTraining):
        main([*base_argv(data, tmp_path / "out"), "--train_diff_full", "--model_checkpoint", str(path)])


def test_a_valid_grouped_config_is_accepted(data, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  random_flip: true\nmodel:\n  activation: silu\ntraining:\n  lr: 1e-4\n"
                    "output:\n  log_interval: 5\noptimizers:\n  vae: {type: AdamW, betas: [0.9, 0.99]}\n"
                    "schedulers:\n  vae: {type: LinearLR}\n", encoding="utf-8")
    with pytest.raises(ReachedTraining):
        main([*base_argv(data, tmp_path / "out"), "--train_vae", "--config", str(path)])


def test_there_are_many_distinct_cases():
    ids = [param.id for param in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40


@pytest.mark.parametrize("case", CASES)
def test_malformed_config_is_rejected_up_front(case, data, tmp_path, capsys):
    if case.read_only and os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")

    def fill(text: str) -> str:
        return text.replace("{tmp}", str(tmp_path)).replace("{data}", str(data))

    for name, content in case.files.items():
        target = tmp_path / name
        if content is None:
            target.mkdir()
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(fill(content), encoding="utf-8")
    out = tmp_path / "out"
    argv = [*base_argv(data, out), *(["--train_vae"] if case.vae else []), *map(fill, shlex.split(case.argv))]
    if case.read_only:
        (tmp_path / case.read_only).chmod(0o555)
    try:
        start = time.perf_counter()
        code = main(argv)
        seconds = time.perf_counter() - start
    finally:
        if case.read_only:
            (tmp_path / case.read_only).chmod(0o755)
    err = capsys.readouterr().err

    assert code == 2, err
    assert "fluxflow-train: error:" in err and "Traceback" not in err, err
    for name in map(fill, case.names):
        assert name in err, f"the error does not name {name!r}:\n{err}"
    count = re.search(r"(\d+) problems:", err)
    assert (int(count.group(1)) if count else 1) == case.problems, err
    assert not out.exists()
    trained = [p for p in tmp_path.rglob("*") if p.name in ("state", "checkpoint.safetensors", "logs")]
    assert not trained, trained
    assert seconds < SECONDS, f"{seconds:.1f} s: the error came late"
