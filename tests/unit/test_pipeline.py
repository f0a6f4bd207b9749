"""The diffusers common pipeline checks, on a tiny random FluxFlowPipeline."""

import ast
import copy
import inspect
import textwrap

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler
from pipeline_cases import SIZE, autoencoder_pipeline, run, tiny_pipeline

from fluxflow import FluxFlowPipeline, FluxFlowVAE


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def test_save_load_round_trip_gives_identical_images(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = FluxFlowPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.scheduler.config.shift == 3.0
    assert np.array_equal(run(pipe), run(loaded))


def test_single_file_and_folder_give_identical_images(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "folder")
    pipe.save_single_file(tmp_path / "checkpoint.safetensors", extra={"global_step": 12})
    folder = FluxFlowPipeline.from_pretrained(tmp_path / "folder")
    single = FluxFlowPipeline.from_pretrained(tmp_path / "checkpoint.safetensors")
    assert single.scheduler.config.shift == 3.0 and type(single.tokenizer) is type(pipe.tokenizer)
    assert np.array_equal(run(folder), run(single))


def test_dtype_loading(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    half = FluxFlowPipeline.from_pretrained(tmp_path, dtype=torch.float16)
    assert {half.vae.dtype, half.transformer.dtype, half.text_encoder.dtype} == {torch.float16}
    with pytest.warns(FutureWarning):
        legacy = FluxFlowPipeline.from_pretrained(tmp_path, torch_dtype=torch.float16)
    assert legacy.transformer.dtype == torch.float16


def test_fp16_variant_of_a_pipeline(pipe, tmp_path):
    pipe.save_pretrained(tmp_path, variant="fp16")
    assert (tmp_path / "transformer" / "diffusion_pytorch_model.fp16.safetensors").exists()
    half = FluxFlowPipeline.from_pretrained(tmp_path, variant="fp16", dtype=torch.float16)
    assert half.transformer.dtype == torch.float16
    torch.testing.assert_close(half.vae.state_dict()["compressor.conv_in.weight"],
                               pipe.vae.state_dict()["compressor.conv_in.weight"].half())


def test_batch_of_prompts_equals_prompts_one_by_one(pipe):
    prompts = ["a red circle", "a blue square in the top left"]
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    batch = run(pipe, prompts, generator=gens)
    singles = [run(pipe, p, seed=s) for p, s in zip(prompts, (1, 2))]
    np.testing.assert_allclose(batch, np.concatenate(singles), atol=1e-5)
    assert not np.allclose(singles[0], singles[1], atol=1e-3)


def test_list_of_generators_seeds_each_image(pipe):
    images = run(pipe, "a green star", generator=[torch.Generator().manual_seed(s) for s in (5, 6)],
                 num_images_per_prompt=2)
    np.testing.assert_allclose(images[0], run(pipe, "a green star", seed=5)[0], atol=1e-5)
    np.testing.assert_allclose(images[1], run(pipe, "a green star", seed=6)[0], atol=1e-5)


def test_return_dict_false_and_num_images_per_prompt(pipe):
    images = run(pipe, ["a", "b"], num_images_per_prompt=3)
    assert images.shape == (6, SIZE, SIZE, 3)
    out = pipe("a red circle", num_inference_steps=3, height=SIZE, width=SIZE, output_type="np",
               generator=torch.Generator().manual_seed(0), return_dict=False)
    assert isinstance(out, tuple) and np.array_equal(out[0], run(pipe))


def test_output_types_agree(pipe):
    as_np = run(pipe, output_type="np")
    as_pt = run(pipe, output_type="pt")
    as_pil = run(pipe, output_type="pil")
    latents = run(pipe, output_type="latent")
    assert as_np.shape == (1, SIZE, SIZE, 3) and as_np.min() >= 0 and as_np.max() <= 1
    np.testing.assert_allclose(as_pt.permute(0, 2, 3, 1).numpy(), as_np, atol=1e-6)
    assert isinstance(as_pil[0], PIL.Image.Image) and as_pil[0].size == (SIZE, SIZE)
    assert np.abs(np.asarray(as_pil[0], dtype=np.float32) / 255 - as_np[0]).max() <= 1 / 255 + 1e-6
    assert latents.shape == (1, 4, SIZE // 8, SIZE // 8)


def test_callback_on_step_end_edits_latents(pipe):
    seen = []

    def zero_at_last_step(p, i, t, kwargs):
        seen.append((i, float(t), kwargs["latents"].shape))
        return {"latents": torch.zeros_like(kwargs["latents"])} if i == p.num_timesteps - 1 else {}

    latents = run(pipe, output_type="latent", callback_on_step_end=zero_at_last_step,
                  callback_on_step_end_tensor_inputs=["latents"])
    assert [i for i, _, _ in seen] == [0, 1, 2] and seen[0][1] == pytest.approx(1000.0)
    assert torch.count_nonzero(latents) == 0


def test_guidance_scale_one_equals_no_guidance(pipe):
    plain = run(pipe, guidance_scale=1.0)
    barely = run(pipe, guidance_scale=1.0 + 1e-7)  # CFG path active, weight ~1
    strong = run(pipe, guidance_scale=7.0)
    np.testing.assert_allclose(plain, barely, atol=1e-5)
    assert np.abs(plain - strong).max() > 1e-3
    with_negative = run(pipe, guidance_scale=7.0, negative_prompt="a blue square")
    assert np.abs(with_negative - strong).max() > 1e-4  # default negative is the empty prompt


def test_prompt_embeds_bypass_the_text_encoder(pipe):
    embeds, _, pooled, _, mask, _ = pipe.encode_prompt("a red circle")
    images = pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, prompt_attention_mask=mask,
                  num_inference_steps=3, height=SIZE, width=SIZE, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    np.testing.assert_array_equal(images, run(pipe))


def only(pipe, *names):
    """The pipeline rebuilt with only the named components (the others ``None``), as diffusers' testers do."""
    return FluxFlowPipeline(**{k: v if k in names else None for k, v in pipe.components.items()})


def test_encode_prompt_needs_only_the_tokenizer_and_text_encoder(pipe):
    text_only = only(pipe, "text_encoder", "tokenizer")
    got = text_only.encode_prompt("a red circle", negative_prompt="a blue square")
    for a, b in zip(got, pipe.encode_prompt("a red circle", negative_prompt="a blue square"), strict=True):
        assert torch.equal(a, b)


def test_encode_prompt_outputs_are_call_arguments_and_give_identical_images(pipe):
    """diffusers' ``test_encode_prompt_works_in_isolation``: encode with the text encoder alone, sample without it."""
    from diffusers.utils.source_code_parsing_utils import ReturnNameVisitor

    visitor = ReturnNameVisitor()
    visitor.visit(ast.parse(textwrap.dedent(inspect.getsource(FluxFlowPipeline.encode_prompt))))
    assert visitor.return_names == ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                                    "negative_pooled_prompt_embeds", "prompt_attention_mask",
                                    "negative_prompt_attention_mask"]
    assert set(visitor.return_names) <= set(inspect.signature(FluxFlowPipeline.__call__).parameters)
    encoded = only(pipe, "text_encoder", "tokenizer").encode_prompt("a red circle", negative_prompt="a blue square")
    sampler = only(pipe, "vae", "transformer", "scheduler")
    sampler.set_progress_bar_config(disable=True)
    images = run(sampler, None, **dict(zip(visitor.return_names, encoded)))
    np.testing.assert_array_equal(images, run(pipe, negative_prompt="a blue square"))


def test_encode_prompt_negative_defaults_to_the_padded_empty_prompt(pipe):
    embeds, neg, pooled, neg_pooled, mask, neg_mask = pipe.encode_prompt(["a", "b"], num_images_per_prompt=2,
                                                                         max_sequence_length=16)
    empty = pipe.encode_prompt("", do_classifier_free_guidance=False, max_sequence_length=16)
    assert embeds.shape[:2] == neg.shape[:2] == neg_mask.shape == (4, 16) and pooled.shape == neg_pooled.shape
    for got, single in ((neg, empty[0]), (neg_pooled, empty[2]), (neg_mask, empty[4])):
        torch.testing.assert_close(got, single.expand_as(got), rtol=1e-5, atol=1e-6)  # batched: rounding
    assert pipe.encode_prompt("a", do_classifier_free_guidance=False)[1::2] == (None, None, None)


def test_encode_prompt_takes_the_dtype_from_the_text_encoder(pipe):
    double = FluxFlowPipeline(**{**pipe.components, "text_encoder": copy.deepcopy(pipe.text_encoder).double()})
    double.set_progress_bar_config(disable=True)
    embeds, neg, pooled, neg_pooled, _, _ = double.encode_prompt("a red circle")
    assert {embeds.dtype, neg.dtype, pooled.dtype, neg_pooled.dtype} == {torch.float64}
    np.testing.assert_allclose(run(double), run(pipe), atol=1e-4)  # sampled in the transformer's dtype


def test_denoising_is_euler_on_the_shifted_flow_schedule(pipe):
    """Given sigmas u, the pipeline's latents equal a hand-written Euler loop over s = shift*u/(1+(shift-1)*u)
    with the model called at timestep s*1000: the convention training uses."""
    steps, shift = 4, pipe.scheduler.config.shift
    embeds, _, pooled, _, mask, _ = pipe.encode_prompt("a red circle", do_classifier_free_guidance=False)
    x = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(3))
    u = np.linspace(1.0, 1.0 / steps, steps)
    s = np.append(shift * u / (1 + (shift - 1) * u), 0.0)
    expected = x.clone()
    with torch.no_grad():
        for i in range(steps):
            v = pipe.transformer(expected, embeds, pooled, torch.tensor([s[i] * 1000.0]), mask).sample
            expected = expected + (s[i + 1] - s[i]) * v
    got = pipe("a red circle", sigmas=list(u), latents=x, height=SIZE, width=SIZE,
               output_type="latent", guidance_scale=1.0).images
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_other_flow_matching_schedulers_can_be_swapped_in(tmp_path):
    pipe = tiny_pipeline()
    pipe.scheduler = FlowMatchHeunDiscreteScheduler.from_config(pipe.scheduler.config)
    images = run(pipe)
    assert images.shape == (1, SIZE, SIZE, 3) and np.isfinite(images).all()
    pipe.save_pretrained(tmp_path)
    assert type(FluxFlowPipeline.from_pretrained(tmp_path).scheduler) is FlowMatchHeunDiscreteScheduler


def test_max_sequence_length_sets_the_token_layout(pipe):
    assert pipe.encode_prompt("a red circle")[0].shape[1] == pipe.text_encoder.config.max_length
    assert pipe.encode_prompt("a red circle", max_sequence_length=16)[4].shape == (1, 16)


@pytest.mark.parametrize("kwargs,message", [
    ({"height": 40}, "multiples of 16"),
    ({"output_type": "jpeg"}, "allowed: pil, np, pt, latent"),
    ({"negative_prompt": ["x", "y", "z"], "guidance_scale": 3.0}, "negative_prompt` has 3"),
    ({"generator": [torch.Generator()] * 3}, "3 generators for a batch of 2"),
    ({"callback_on_step_end_tensor_inputs": ["noise"]}, "not in"),
    ({"latents": torch.zeros(2, 4, 3, 3)}, "latents` must have shape"),
])
def test_bad_inputs_are_named(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe(["a", "b"], **{"num_inference_steps": 2, "height": SIZE, "width": SIZE, **kwargs})


def mismatched_text_inputs(pipe, case):
    """``__call__`` keyword arguments for one kind of mismatched positive/negative text embeddings."""
    config = pipe.transformer.config
    embeds, pooled = torch.randn(1, 24, config.text_embed_dim), torch.randn(1, config.pooled_projection_dim)
    short, short_pooled, mask, short_mask = embeds[:, :16], pooled, torch.ones(1, 24), torch.ones(1, 16)
    given = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled, "prompt_attention_mask": mask}
    return {
        "length": {**given, "negative_prompt_embeds": short, "negative_pooled_prompt_embeds": short_pooled},
        "pooled": {**given, "negative_prompt_embeds": embeds, "negative_pooled_prompt_embeds": pooled.repeat(2, 1)},
        "mask": {**given, "negative_prompt_embeds": embeds, "negative_pooled_prompt_embeds": pooled,
                 "negative_prompt_attention_mask": short_mask},
        "no pooled": {"prompt_embeds": embeds},
        "no negative pooled": {**given, "negative_prompt_embeds": embeds, "guidance_scale": 1.0},
        "prompt and short negative": {"prompt": "a red circle", "negative_prompt_embeds": short,
                                      "negative_pooled_prompt_embeds": short_pooled},
    }[case]


@pytest.mark.parametrize("case,message", [
    ("length", r"`prompt_embeds` and `negative_prompt_embeds` must have the same shape when passed directly, but "
               r"got: `prompt_embeds` \(1, \d+, \d+\) != `negative_prompt_embeds` \(1, 16, \d+\)"),
    ("pooled", r"`pooled_prompt_embeds` and `negative_pooled_prompt_embeds` must have the same shape.*\(2, \d+\)"),
    ("mask", r"`prompt_attention_mask` and `negative_prompt_attention_mask` must have the same shape.*\(1, 16\)"),
    ("no pooled", "If `prompt_embeds` are provided, `pooled_prompt_embeds` also have to be passed"),
    ("no negative pooled", "`negative_pooled_prompt_embeds` also have to be passed"),
    ("prompt and short negative", r"negative text embeddings have shape \(1, 16, \d+\)"),
])
def test_mismatched_text_embeddings_are_refused_up_front(pipe, case, message):
    kwargs = {"prompt": None, "num_inference_steps": 2, "height": SIZE, "width": SIZE,
              **mismatched_text_inputs(pipe, case)}
    with pytest.raises(ValueError, match=message):
        pipe(**kwargs)


def test_pickled_bin_weights_load_only_when_asked(pipe, tmp_path):
    """Safetensors only by default (unpickling can run code), with an error saying how to opt in."""
    pipe.save_pretrained(tmp_path, safe_serialization=False)
    refused = r"only pickled \.bin weights .*safetensors by default.*use_safetensors=False"
    with pytest.raises(OSError, match=refused):
        FluxFlowPipeline.from_pretrained(tmp_path)
    with pytest.raises(OSError, match=refused):
        FluxFlowVAE.from_pretrained(tmp_path / "vae")
    loaded = FluxFlowPipeline.from_pretrained(tmp_path, use_safetensors=False)
    loaded.set_progress_bar_config(disable=True)
    assert np.array_equal(run(loaded), run(pipe))
    vae = FluxFlowVAE.from_pretrained(tmp_path / "vae", use_safetensors=False)
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), pipe.vae.state_dict().values()))


def test_a_file_that_is_not_a_fluxflow_checkpoint_is_named(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not a fluxflow checkpoint"):
        FluxFlowPipeline.from_pretrained(tmp_path / "other.safetensors")


def test_default_size_comes_from_the_transformer(pipe):
    assert pipe.default_sample_size == pipe.transformer.config.sample_size * 8
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)


def test_dynamic_shifting_uses_diffusers_resolution_shift():
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    pipe = tiny_pipeline()
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=4,
                                                     max_image_seq_len=64)
    run(pipe, height=64, width=64)  # 8x8 latent, patch 2: 16 tokens
    expected = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=4, max_image_seq_len=64)
    expected.set_timesteps(3, mu=calculate_shift(16, 4, 64, 0.5, 1.15))
    torch.testing.assert_close(pipe.scheduler.sigmas, expected.sigmas)


# --- a pretrained diffusers AutoencoderKL as the VAE (an SD3/Flux-style 16-channel one, random here)
@pytest.mark.parametrize("stages", [2, 4])
def test_an_autoencoder_kl_pipeline_samples_at_the_vae_scale_factor(stages):
    pipe = autoencoder_pipeline(stages, scaling_factor=1.5, shift_factor=0.1)
    assert pipe.vae_scale_factor == 2 ** (stages - 1)
    images = run(pipe)
    assert images.shape == (1, SIZE, SIZE, 3) and np.isfinite(images).all()
    assert pipe.default_sample_size == pipe.transformer.config.sample_size * 2 ** (stages - 1)


def test_an_autoencoder_kl_pipeline_round_trips_through_a_folder_and_one_file(tmp_path):
    import json

    from diffusers import AutoencoderKL

    pipe = autoencoder_pipeline(scaling_factor=1.5, shift_factor=0.1)
    pipe.save_pretrained(tmp_path / "folder")
    pipe.save_single_file(tmp_path / "checkpoint.safetensors")
    index = json.loads((tmp_path / "folder" / "model_index.json").read_text())
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    expected = run(pipe)
    for path in (tmp_path / "folder", tmp_path / "checkpoint.safetensors"):
        loaded = FluxFlowPipeline.from_pretrained(path)
        loaded.set_progress_bar_config(disable=True)
        assert type(loaded.vae) is AutoencoderKL and loaded.vae.config.shift_factor == 0.1, path
        assert np.array_equal(run(loaded), expected), path


def test_a_vae_without_shift_factor_decodes_unshifted():
    pipe = autoencoder_pipeline(scaling_factor=2.0)  # shift_factor None, as in diffusers' SD VAEs
    assert pipe.vae.config.shift_factor is None
    latents = run(pipe, output_type="latent")
    with torch.no_grad():
        expected = pipe.image_processor.postprocess(pipe.vae.decode(latents / 2.0).sample, output_type="np")
    assert np.array_equal(run(pipe), expected)
