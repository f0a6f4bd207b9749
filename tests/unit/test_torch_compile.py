"""``--torch_compile`` (regional compilation of the repeated blocks) and ``--allow_tf32``.

Compiled and eager forward + backward agree, with and without gradient checkpointing; only the repeated blocks
are compiled; a real run with the flag trains and resumes exactly. The fast tests compile with the
``aot_eager`` backend (dynamo tracing and AOTAutograd, as the real backend sees them, without inductor's C++
builds: seconds); the ``slow`` ones with inductor, the backend a run uses (a minute and more on 2 CPUs).
"""

import shutil

import pytest
import torch
from model_cases import perturb_
from safetensors.torch import load_file

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.models import FluxFlowTransformer, FluxFlowVAE, bezier
from fluxflow.models.layers import FeedForward
from fluxflow.models.transformer import FluxFlowTransformerBlock
from fluxflow.models.vae_blocks import ResnetBlock
from fluxflow.training import speed
from fluxflow.training.config import TrainConfig
from fluxflow.training.components import build_components

FAST = {"backend": "aot_eager", "dynamic": False, "fullgraph": True}  # fullgraph: a graph break is an error
INDUCTOR = {"dynamic": False, "fullgraph": True}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each test compiles from scratch (no graphs, counters or recompile budget left by another)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _transformer() -> tuple[torch.nn.Module, callable]:
    model = perturb_(FluxFlowTransformer.from_preset("tiny"))
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    args = (torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 5, 32, generator=g),
            torch.randn(2, 32, generator=g), torch.tensor([300.0, 700.0]), mask)
    return model, lambda: model(*args).sample


def _vae() -> tuple[torch.nn.Module, callable]:
    """One resolution level (few block shapes: quick to compile), SPADE decoding, Bezier activations."""
    model = perturb_(FluxFlowVAE.from_preset("tiny", block_out_channels=(16,)))
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return model, lambda: model(x).sample


MODELS = {"transformer": _transformer, "vae": _vae}


def _step(model, forward) -> tuple[torch.Tensor, dict]:
    """One forward + backward of a fixed loss: ``(output, {name: gradient})``."""
    model.zero_grad(set_to_none=True)
    out = forward()
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_close(actual, expected, rel=1e-5):
    """The output, all gradients together and each gradient agree within ``rel`` (relative L2 error). A
    gradient that is zero in exact arithmetic (a bias right before a GroupNorm) is rounding noise, so each one
    may also be off by ``rel / 10`` of the largest gradient's norm."""
    (out, grads), (ref_out, ref_grads) = actual, expected
    assert (out - ref_out).norm() <= rel * ref_out.norm()
    assert grads.keys() == ref_grads.keys() and grads
    flat, ref_flat = (torch.cat([g.flatten() for g in gs.values()]) for gs in (grads, ref_grads))
    assert (flat - ref_flat).norm() <= rel * ref_flat.norm()
    noise = rel / 10 * max(g.norm() for g in ref_grads.values())
    for name, ref in ref_grads.items():
        assert (grads[name] - ref).norm() <= rel * ref.norm() + noise, name


def _compare(name: str, checkpointing: bool, options: dict) -> None:
    model, forward = MODELS[name]()
    if checkpointing:
        model.enable_gradient_checkpointing()
    eager = _step(model, forward)
    compiled = speed.compile_repeated_blocks(model, **options)
    assert compiled
    first, again = _step(model, forward), _step(model, forward)  # compiles, then runs the compiled code
    _assert_close(first, eager)
    _assert_close(again, eager)
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
@pytest.mark.parametrize("name", MODELS)
def test_compiled_blocks_give_the_eager_loss_and_gradients(name, checkpointing):
    _compare(name, checkpointing, FAST)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_inductor_compiled_blocks_give_the_eager_loss_and_gradients(name):
    _compare(name, True, INDUCTOR)


def test_bezier_inside_a_compiled_block_is_traced_not_compiled_again(monkeypatch):
    """With the compiled Bezier kernels selected, a compiled block traces the Bezier formulas into its own
    graph (no graph break) instead of calling the separately compiled kernels."""
    monkeypatch.setattr(bezier, "_compiled_fns", {})
    previous = bezier.set_bezier_kernels("compiled")
    try:
        block = FeedForward(8, 16, "bezier")
        block.compile(**FAST)
        x = torch.randn(2, 3, 8, requires_grad=True)
        block(x).square().sum().backward()
    finally:
        bezier.set_bezier_kernels(previous)
    assert bezier._compiled_fns == {} and x.grad is not None


def test_only_the_repeated_blocks_are_compiled():
    for model, block in ((_transformer()[0], FluxFlowTransformerBlock), (_vae()[0], ResnetBlock)):
        keys = list(model.state_dict())
        names = speed.compile_repeated_blocks(model)
        assert names and names == [n for n, m in model.named_modules() if isinstance(m, block)]
        assert {n for n, m in model.named_modules() if speed.is_compiled(m)} == set(names)
        assert list(model.state_dict()) == keys  # no _orig_mod. prefix: checkpoints load either way


def test_components_compile_only_the_trained_models():
    cfg = TrainConfig(model_preset="tiny", train_diff_full=True, torch_compile=True)
    models = build_components(cfg)
    assert models.torch_compile and not models.train_vae
    models.compile_trained()
    assert any(speed.is_compiled(m) for m in models.transformer.modules())
    assert not any(speed.is_compiled(m) for m in models.vae.modules())  # frozen: it only encodes


def test_allow_tf32_sets_the_cuda_switches(caplog):
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        speed.allow_tf32(False)  # without the flag: torch's settings stay
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        with caplog.at_level("INFO", logger="fluxflow.train"):
            speed.allow_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.cuda.is_available() or "applies to CUDA" in caplog.text
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _train_and_resume(tmp_path, *flags):
    """Joint VAE + flow training, 4 steps straight and resumed from step 2: identical final weights."""
    data = write_shapes_dataset(tmp_path / "data", 8, size=32, seed=0) / "train"
    common = ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4",
              "--workers", "0", "--seed", "5", "--train_vae", "--train_diff_full", "--torch_compile",
              "--max_train_steps", "4", "--checkpoint_save_interval", "2", *flags]
    assert main([*common, "--output_path", str(tmp_path / "straight")]) == 0
    resumed = tmp_path / "resumed" / "state"
    resumed.mkdir(parents=True)
    shutil.copytree(tmp_path / "straight" / "state" / "checkpoint-2", resumed / "checkpoint-2")
    assert main([*common, "--output_path", str(tmp_path / "resumed"), "--resume_from_checkpoint",
                 "latest"]) == 0
    a, b = (load_file(tmp_path / run / "checkpoint.safetensors") for run in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_compiled_run_trains_and_resumes(tmp_path, monkeypatch):
    compiled, real = [], speed.compile_repeated_blocks

    def fast(model):
        compiled.append(real(model, **FAST))
        return compiled[-1]

    monkeypatch.setattr(speed, "compile_repeated_blocks", fast)
    _train_and_resume(tmp_path, "--no_samples")
    assert len(compiled) == 4 and all(compiled)  # VAE and flow processor, in each of the two runs
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2


@pytest.mark.slow
def test_an_inductor_compiled_run_with_samples_trains_and_resumes(tmp_path):
    _train_and_resume(tmp_path, "--gradient_checkpointing", "--sample_steps", "2", "--sample_sizes", "32",
                      "--sample_captions", "a red circle")
