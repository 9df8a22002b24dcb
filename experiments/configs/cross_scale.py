r"""Cost-aware cross-scale model: learned HR-tile sampler under a budget,
LR-guided latent predictor, recognition + retrieval heads.

  python launch.py --config experiments/configs/cross_scale.py --workdir runs/xs
  python launch.py --config experiments/configs/cross_scale.py \
      --workdir runs/xs_r7 --dataset rsscn7
  python launch.py --config experiments/configs/cross_scale.py:runlocal \
      --workdir /tmp/xs

The default is the main job: geoworld (multi-label, 10x10 grid) with the
CPU-sized model, 1200 steps of 32 (minutes on 2 CPU cores).
arg: comma-separated "runlocal" (seconds, on toyworld), "quick" (400 steps:
the sweeps' --quick; implies "sweep"), "sweep" (no periodic checkpoints or
evals: the final test eval only), "large" (2x wider encoders and predictor,
batch 64, 1500 steps: for accelerators).
Baselines are the same config: --config.model.policy=random|uniform|heuristic
(oracle: also --config.data.fields='("lr","hr","labels","mask_objects")'),
--config.model.budget=0 (LR only) or 1.0 (dense HR), a tile count with
--config.model.budget_tiles=K,
--config.model.predictor.lr_guidance=False (HR-only completion).
"""

import ml_collections

from experiments.configs import _common as common
from experiments.configs import lr_vit


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_arg(
      arg, ("runlocal", "quick", "sweep", "large"), "cross_scale.py"
  )
  runlocal, quick = "runlocal" in args, "quick" in args
  c = lr_vit.get_config("runlocal" if runlocal else None)
  # The main job's world; toyworld for runlocal smokes and unit tests.
  c.dataset = "toyworld" if runlocal else "geoworld"
  c.data.fields = ("lr", "hr", "labels")
  c.model = ml_collections.ConfigDict(
      dict(
          name="cross_scale",
          budget=0.125,  # a ratio of the G*G grid: 0 LR only, 1.0 dense
          # A tile count: replaces `budget` when >= 0 (--config.model.budget=8
          # is the ratio 8.0, refused; --config.model.budget_tiles=8 buys 8).
          budget_tiles=-1,
          # Per-class tile budgets (replace `budget`), e.g. '(4,8,8,12,8,8)'.
          class_budgets=(),
          # Price budget: greedy by score per price under `total`.
          cost=dict(enabled=False, total=8.0, price=1.0, k_max=0),
          policy="learned",  # learned | random | uniform | heuristic | oracle
          # sigma is relative to standardised logits: 0.5 learns, 0.05 not.
          # counterfactual: unbought target tiles also reach the sampler.
          selection=dict(
              mode="perturbed", sigma=0.5, num_samples=32, counterfactual=False
          ),
          lr_encoder=dict(width=64, depth=2, num_heads=4, mlp_dim=128),
          hr_encoder=dict(kind="cnn", width=64, depth=2),  # "vit": big tiles
          # prior=1.0: logits start from the heuristic's ranking.
          sampler=dict(width=32, depth=1, num_heads=4, prior=1.0),
          predictor=dict(
              width=64, depth=2, num_heads=4, mlp_dim=128, lr_guidance=True
          ),
          num_target_tiles=-1,  # latent targets per scene; -1: k
          # Sampler regression targets: HR detail and/or completion error;
          # completion -1: 1.0 on multi-label data, 0 otherwise (geoworld
          # val: +7.1 [5.5, 8.6] mAP at 1/8; RSSCN7: -1.5 accuracy at 1/4);
          # evidence, objects > 0: label_sampler_loss (cross_scale.py).
          sampler_target=dict(
              detail=1.0, completion=-1.0, evidence=0.0, objects=0.0
          ),
          embed_dim=64,
          # map (attention pooling) | mil (a class is present if some tile
          # shows it) | auto: mil on multi-label data (chosen on geoworld's
          # val regions: objects 0.60 AP vs 0.28 with map), map otherwise.
          head_type="auto",
          # r of the MIL's LSE pooling, mean r->0 .. max r->inf (geoworld
          # val, dense HR: 0.745 mAP at 16, 0.508 at 4, 0.428 at 1).
          mil_sharpness=16.0,
          zero_hr_gain=0.0,
          # auto: the Pallas kernel where verified on the device, else JAX.
          select_impl="auto",
          remat=False,  # rematerialise block activations (memory <-> FLOPs)
          # Issue 22 (docs/design.md#ground-resolution-and-bands), off:
          # positions from ground coordinates (in reference_gsd metres) of
          # each scene's GSD (batch "lr_gsd"/"hr_gsd", else lr_gsd/hr_gsd;
          # 0: the manifest's) instead of learned tables.
          gsd_positions=False,
          reference_gsd=1.0,
          # > 0: a learned gain on those positions, starting here; 0: none.
          position_gain=0.0,
          lr_gsd=0.0,
          hr_gsd=0.0,
          # "wavelength": first layers generated from each band's
          # wavelength (crossscale/bands.py), any bands; () = the
          # manifest's band names.
          band_embedding="learned",
          lr_bands=(),
          hr_bands=(),
      )
  )
  # Train at random GSD factors, e.g. (0.5, 2.0) (input_pipeline.
  # GsdAugment); () is off. Batches then carry "lr_gsd"/"hr_gsd".
  c.data.gsd_augment = ()
  # Its zoom-out mosaics: "random" scenes, or "same_label" (the centre's
  # class; single-label data).
  c.data.gsd_neighbours = "random"
  # The fraction of training scenes re-rendered; the rest stay native.
  c.data.gsd_augment_prob = 1.0
  # Encoders from a pretraining run (its workdir, a step dir or an .npz).
  c.model_init = ""
  c.model_init_keys = ("lr_encoder", "hr_encoder", "sampler")
  c.model_init_lr_scale = 1.0  # LR factor of the model_init subtrees
  c.aux_weights = ml_collections.ConfigDict(
      dict(latent=1.0, retrieval=0.1, sampler=1.0)
  )
  c.total_steps = 1500
  c.optim.lr = 1e-3
  # The sampler stays at its prior (the heuristic's ranking) for the first
  # half of training, while the HR path learns from the tiles it buys
  # (geoworld val, 3 seeds: 0.591 vs 0.498 mAP, a tie +9.3 [-2.6, +20.4],
  # but no seed collapses: worst 0.552 vs 0.439).
  c.optim.frozen_for = (("^sampler/", 0.5),)
  c.eval_every = 500
  if runlocal:
    c.model.update(
        dict(
            lr_encoder=dict(width=16, depth=1, num_heads=2, mlp_dim=32),
            hr_encoder=dict(kind="cnn", width=16, depth=1),
            sampler=dict(width=16, depth=1, num_heads=2, prior=1.0),
            predictor=dict(
                width=16, depth=1, num_heads=2, mlp_dim=32, lr_guidance=True
            ),
            selection=dict(
                mode="perturbed",
                sigma=0.5,
                num_samples=16,
                counterfactual=False,
            ),
            embed_dim=8,
        )
    )
    c.total_steps = 20
    c.eval_every = 10
  elif "large" not in args:  # the CPU-sized model (main job, sweeps)
    c.batch_size = 32
    c.total_steps = 1200
    c.eval_every = 400
    c.optim.warmup_steps = 40
    c.model.lr_encoder.update(width=32, depth=1, num_heads=2, mlp_dim=64)
    c.model.hr_encoder.update(width=32, depth=2)
    c.model.predictor.update(width=32, depth=1, num_heads=2, mlp_dim=64)
    c.model.sampler.update(width=16)
    c.model.embed_dim = 32
  if quick:
    c.total_steps = 400
  if quick or "sweep" in args:
    common.for_sweep(c)
  return c
