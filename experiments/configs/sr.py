r"""Super-resolution, every family in one config: LR -> HR on LR/HR pairs,
scored by PSNR/SSIM per band on [0, 1] against the bicubic baseline
(evaluator "sr", crossscale.evaluators.SREvaluator).

Trains on the embedded toyworld (3 bands, x4) by default; `--dataset` takes
another LR/HR records directory (then set --config.model.out_bands to its HR
band count and --config.model.scale to its ratio).

  python launch.py --config experiments/configs/sr.py:model=edsr \
      --workdir runs/sr_edsr
  python launch.py --config experiments/configs/sr.py:model=gan \
      --workdir runs/sr_gan
  python launch.py --config experiments/configs/sr.py:model=diffusion,runlocal \
      --workdir /tmp/x

arg: comma-separated "model=bicubic|edsr|swinir|implicit|gan|diffusion"
(default edsr) and at most one of "quick" (small widths, 200 steps, batch
16, a 1000-scene toyworld: CPU minutes; the SR grid's --quick) and
"runlocal" (tiny widths, a few steps: smoke test). `config.model_size`
names the widths: tiny | small | base.
"gan" is the ESRGAN recipe (RRDB 23 blocks; aux weights l1 1e-2,
perceptual 1.0, adversarial 5e-3); "gan_psnr" is its PSNR-oriented first
stage (L1 only), whose checkpoint `--config.model.generator_init` takes.
"""

import ml_collections

from experiments.configs import _common as common

FAMILIES = (
    "bicubic",
    "edsr",
    "swinir",
    "implicit",
    "gan",
    "gan_psnr",
    "diffusion",
)


SIZES = ("tiny", "small", "base")
# "small" (CPU --quick) fields over the tiny ones; LIIF queries 4 x H x W
# MLPs: kept near the tiny size.
_SMALL = {
    "edsr": dict(features=16, num_blocks=2),
    "swinir": dict(
        embed_dim=16,
        depths=(2, 2),
        num_heads=2,
        window_size=4,
        upsample_features=16,
    ),
    "implicit": dict(features=16, num_blocks=2, hidden=(16,)),
}
# Toyworld of the quick runs: 1000 train / 64 val / 200 test scenes.
TOYWORLD_QUICK = dict(num_train=1000, num_val=64, num_test=200)


def model_config(family: str, scale: int, bands: int, size: str) -> dict:
  """config.model for an SR family at `size` (SIZES)."""
  if size not in SIZES:
    raise ValueError(f"unknown SR model size {size!r}; known: {SIZES}")
  c = _model(family, scale, bands, size != "base")
  if size == "small":
    c.update(_SMALL.get(family, {}))
  return c


def _model(family: str, scale: int, bands: int, runlocal: bool) -> dict:
  """config.model for a family (full size, or tiny when runlocal)."""
  if family == "bicubic":
    return dict(name="sr_bicubic", scale=scale)
  if family == "edsr":
    return dict(
        name="sr_edsr",
        out_bands=bands,
        scale=scale,
        features=8 if runlocal else 64,
        num_blocks=1 if runlocal else 16,
    )
  if family == "swinir":
    return dict(
        name="sr_swinir",
        out_bands=bands,
        scale=scale,
        **(
            dict(
                embed_dim=8,
                depths=(2,),
                num_heads=2,
                window_size=4,
                upsample_features=8,
            )
            if runlocal
            else dict(
                embed_dim=60,
                depths=(6, 6, 6, 6),
                num_heads=6,
                window_size=8,
                upsample_features=64,
            )
        ),
    )
  if family == "implicit":
    return dict(
        name="sr_implicit",
        out_bands=bands,
        scale=scale,
        features=8 if runlocal else 64,
        num_blocks=1 if runlocal else 16,
        hidden=(16,) if runlocal else (256, 256, 256, 256),
    )
  if family in ("gan", "gan_psnr"):
    return dict(
        name="sr_gan",
        out_bands=bands,
        scale=scale,
        **(
            dict(
                features=8,
                growth=4,
                num_blocks=1,
                disc_widths=(8, 16),
                perceptual_width=8,
            )
            if runlocal
            else dict(
                features=64,
                growth=32,
                num_blocks=23,
                disc_widths=(64, 128, 256, 512),
                perceptual_width=64,
            )
        ),
        perceptual_depth=2,
        perceptual_stride=1,
        perceptual_init="",  # a cross_scale checkpoint ("hr_encoder")
        generator_init="",
    )  # a gan_psnr checkpoint
  if family == "diffusion":
    return dict(
        name="sr_diffusion",
        out_bands=bands,
        scale=scale,
        widths=(8, 16) if runlocal else (64, 128, 128),
        time_dim=16 if runlocal else 128,
        prediction="v",
        residual=True,
        sample_steps=2 if runlocal else 8,
    )
  raise ValueError(
      f"unknown SR family {family!r} in the config arg "
      f"'model=...'; known: {', '.join(FAMILIES)}"
  )


AUX_WEIGHTS = {
    "gan": dict(l1=1e-2, perceptual=1.0, adversarial=5e-3, discriminator=1.0),
    "gan_psnr": dict(
        l1=1.0, perceptual=0.0, adversarial=0.0, discriminator=0.0
    ),
    "diffusion": dict(diffusion=1.0),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_arg(arg, ("model", "quick", "runlocal"), "sr.py")
  runlocal, quick = bool(args.get("runlocal")), bool(args.get("quick"))
  if runlocal and quick:
    raise ValueError("sr.py: pass at most one of 'quick' and 'runlocal'.")
  family = args.get("model", "edsr")
  gan = family.startswith("gan")
  c = common.base(
      fields=("lr", "hr"),
      task="sr",  # no logits: trained on the weighted aux losses
      lr=2e-4 if gan else 1e-3,
      weight_decay=0.0,
      # The GAN's perceptual feature net is frozen (no optimizer
      # state).
      frozen=(r"^perceptual/",) if gan else (),
  )
  c.family = family
  c.model_size = "tiny" if runlocal else ("small" if quick else "base")
  c.model = ml_collections.ConfigDict(
      model_config(family, c.toyworld.scale, 3, c.model_size)
  )
  c.aux_weights = ml_collections.ConfigDict(
      AUX_WEIGHTS.get(family, dict(l1=1.0))
  )
  # --config.evals.test.feature_init=RUN adds "hrenc_dist": the feature
  # distance in a pretrained HR encoder of ours (experiments/configs/
  # pretrain.py with --config.model.hr_encoder.stride=1).
  c.evals = ml_collections.ConfigDict(
      dict(
          val=dict(type="sr", split="val", limit=256),
          test=dict(type="sr", split="test"),
      )
  )
  c.final_eval_split = ""  # the classification final eval does not apply

  if quick:
    c.toyworld.update(TOYWORLD_QUICK)
    c.batch_size = 16
    c.total_steps = 200
  if runlocal:
    c.toyworld.update(common.TOYWORLD_RUNLOCAL)
    c.batch_size = 16
    c.total_steps = 4
    c.checkpoint.every = 2
    c.log_every = 2
    c.eval_every = 1000
    c.evals.val.limit = 16
  return c
