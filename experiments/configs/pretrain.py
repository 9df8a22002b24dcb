r"""Cross-scale pretraining of the LR and HR encoders
(crossscale/models/cross_scale_pretrain.py: LR-region <-> HR-tile alignment +
masked LR modelling; optional refseg backbone and class-prompt text alignment).

  python launch.py --config experiments/configs/pretrain.py --workdir runs/pre
  python launch.py --config experiments/configs/pretrain.py:text --workdir \
      runs/pre_r7 --dataset rsscn7       # + class prompts (zero-shot)
  python launch.py --config experiments/configs/pretrain.py:runlocal \
      --workdir /tmp/p

Its checkpoint initialises, by config:
  cross-scale model   --config.model_init=runs/pre
  SR GAN perceptual   --config.model.perceptual_init=runs/pre  (pretrain with
                      --config.model.hr_encoder.stride=1 and the GAN's widths)
  refseg backbone     --config.model.backbone_init=runs/pre  (arg "backbone")

arg: comma-separated "runlocal", "text" (class-prompt alignment through the
frozen MiniLM), "backbone" (also pretrain refseg's backbone), "quick" (the
encoder sizes of cross_scale.py:quick; implies "sweep"), "sweep" (the final
test eval only), "steps=N" (N steps, 10% warmup, one final checkpoint;
default 600 quick, 3000 otherwise).
"""

import ml_collections

from crossscale.models import cross_scale_pretrain
from experiments.configs import _common as common
from experiments.configs import cross_scale, refseg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  opts = common.parse_arg(
      arg,
      ("runlocal", "text", "backbone", "quick", "sweep", "steps"),
      "pretrain.py",
  )
  runlocal, quick = "runlocal" in opts, "quick" in opts
  sweep = quick or "sweep" in opts
  xs_arg = ",".join(a for a in ("runlocal", "quick", "sweep") if a in opts)
  c = cross_scale.get_config(xs_arg or None)
  xs = c.model
  c.model = ml_collections.ConfigDict(
      dict(
          name="xs_pretrain",
          lr_encoder=xs.lr_encoder.to_dict(),
          hr_encoder=xs.hr_encoder.to_dict(),
          sampler=xs.sampler.to_dict(),  # None: encoders only
          backbone=(
              refseg.get_config(
                  "runlocal" if runlocal else None
              ).model.backbone.to_dict()
              if "backbone" in opts
              else None
          ),
          embed_dim=128 if not runlocal else 16,
          num_target_tiles=8,
          mask_ratio=0.5,
          contrast_tiles=0,  # > 0: HR tile contrast (cross_scale_pretrain.py)
          contrast_shift=1,
          text="text" in opts,
          prompt=cross_scale_pretrain.PROMPT,
          minilm_path="",
      )
  )
  c.model_init = ""
  c.aux_weights = ml_collections.ConfigDict(
      dict(
          align=1.0,
          mim=1.0,
          hr_detail=1.0,
          sampler=1.0,
          align_backbone=1.0,
          hr_contrast=1.0,
      )
  )
  c.data.fields = ("lr", "hr", "labels")
  # Labels feed only the "text" objective; without it the run is label-free.
  c.optim.frozen = cross_scale_pretrain.FROZEN if "text" in opts else ()
  c.evals = ml_collections.ConfigDict(
      dict(
          val=dict(type="classification", split="val"),
          test=dict(type="classification", split="test"),
      )
  )
  c.final_eval_split = ""
  c.total_steps = 3000 if not runlocal else 20
  if sweep:
    common.for_sweep(c, {"test": dict(type="classification", split="test")})
  if sweep or "steps" in opts:
    common.set_steps(c, int(opts.get("steps", 600 if quick else 3000)))
  return c
