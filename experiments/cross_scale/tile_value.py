r"""Which scorer ranks the tiles a run did not buy by what buying them is worth?

  python -m experiments.cross_scale.tile_value --work_dir RUNS --budget 0.125 \
      --out /tmp/tv
  python -m experiments.cross_scale.tile_value --runs ours=DIR --out /tmp/tv

For each test scene, a trained cross-scale run (a training workdir, or the
finished cells of an `experiments.cross_scale.tradeoff --work_dir` sweep at
`--budget`) buys its k tiles by its own policy. Every tile it did not buy
then gets:
  value: the drop in the scene's task loss (its true labels) when that one
    tile is bought as well (predictor and head rerun): the ground truth;
  first_order: minus the loss's derivative w.r.t. that tile's observation
    weight at 0, the signal `model.selection.counterfactual` feeds the
    sampler in training;
  own_policy: the run's own tile scores (its learned sampler's logits, or
    the fixed policy's scores);
  lr_detail: the LR detail statistic of the heuristic policy;
  hr_detail: the sub-LR-pixel HR detail energy the learned sampler regresses
    onto (needs the HR tile: an oracle, not a policy).
Per scene it compares each scorer with `value` over the tiles not bought:
Spearman rank correlation, and the summed value of the k tiles the scorer
ranks first (top_k), beside that of the k most valuable (best_k) and of k
at random (random_k); `capture` = (top_k - random_k) / (best_k - random_k)
of the means over scenes. Prints a table (means over scenes, then over
seeds) and writes OUT/<dataset>_steps<N>_s<first>-<last>.json.
"""

from __future__ import annotations

import argparse

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from crossscale import input_pipeline, metrics, reporting, tile_grid
from experiments.cross_scale import selection_swap

SCORERS = ("first_order", "own_policy", "lr_detail", "hr_detail")


def scene_tile_values(model, params, batch, task: str) -> dict:
  """{"bought": [B, N] bool, "value": [B, N], and each of SCORERS: [B, N]}
  for a batch {"lr", "hr", "labels"} (module docstring)."""
  lr, hr, labels = batch["lr"], batch["hr"], batch["labels"]
  if model.zero_hr_gain:
    raise ValueError(
        "tile values of zero_hr_gain runs are not supported "
        "(config.model.zero_hr_gain must be 0)"
    )

  def apply(method, *args):
    return model.apply(
        {"params": params},
        *args,
        method=method,
        rngs={"selection": jax.random.key(0)},
    )

  B, N = lr.shape[0], model.n_tiles
  plan = apply("plan", {"lr": lr})
  idx, valid = plan["tile_indices"], plan["tile_valid"]  # [B, k]
  bought = jnp.zeros((B, N), bool).at[jnp.arange(B)[:, None], idx].set(valid)
  context, _ = apply("lr_context", lr)
  hr_tiles = tile_grid.to_tiles(hr, model.grid)  # [B, N, t, t, C]
  latents = apply("encode_tiles", hr_tiles)  # [B, N, D_hr]
  every = jnp.broadcast_to(jnp.arange(N), (B, N))

  def losses(weight):  # [B, N] -> [B]
    tokens = apply("complete", context, every, weight, latents)
    logits, _ = apply("head_logits", tokens, context)
    return metrics.example_losses(logits, labels, task)

  w0 = bought.astype(jnp.float32)
  base, vjp = jax.vjp(losses, w0)  # [B]
  (grad,) = vjp(jnp.ones_like(base))  # [B, N]
  with_tile = jax.vmap(lambda t: losses(w0.at[:, t].set(1.0)), out_axes=1)(
      jnp.arange(N)
  )  # [B, N]
  return {
      "bought": bought,
      "value": base[:, None] - with_tile,
      "first_order": -grad,
      "own_policy": plan["tile_logits"],
      "lr_detail": tile_grid.tile_statistic(lr, model.grid),
      "hr_detail": tile_grid.hr_detail(hr_tiles, hr.shape[1] // lr.shape[1]),
  }


def agreement(score: np.ndarray, value: np.ndarray, m: int):
  """(Spearman rho, summed value of the scorer's top m) of one scene's
  scorer `[U]` against the tiles' values `[U]` (rho None for constant
  input)."""
  rho = (
      None
      if np.ptp(score) == 0 or np.ptp(value) == 0
      else float(stats.spearmanr(score, value).statistic)
  )
  return rho, float(value[np.argsort(-score, kind="stable")[:m]].sum())


def run_values(run: selection_swap.Run, split: str = "test") -> dict:
  """Means over the scenes of `split`: {scorer: {"spearman", "top_k"}},
  "best_k" (the k most valuable tiles' summed value), "random_k" (k times
  the mean value of a tile not bought), "scenes", "k". `capture` turns
  these into the fraction of the best k's gain over random k a scorer's
  top k gets."""
  cfg = run.config
  k = run.model.k()
  fn = jax.jit(lambda p, b: scene_tile_values(run.model, p, b, run.task))
  per = {s: ([], []) for s in SCORERS}
  best, rand = [], []
  for batch in input_pipeline.eval_dataset(
      cfg.data.path,
      split,
      batch_size=int(cfg.batch_size),
      fields=("lr", "hr", "labels"),
  ):
    out = jax.tree.map(
        np.asarray,
        fn(run.params, {f: batch[f] for f in ("lr", "hr", "labels")}),
    )
    for b in np.flatnonzero(np.asarray(batch["valid"])):
      free = ~out["bought"][b]
      value = out["value"][b][free]
      best.append(np.sort(value)[::-1][:k].sum())
      rand.append(k * value.mean())
      for s in SCORERS:
        rho, top = agreement(out[s][b][free], value, k)
        if rho is not None:
          per[s][0].append(rho)
        per[s][1].append(top)
  res = {
      s: {
          "spearman": float(np.mean(r)) if r else None,
          "top_k": float(np.mean(t)),
      }
      for s, (r, t) in per.items()
  }
  return {
      **res,
      "scenes": len(best),
      "k": k,
      "best_k": float(np.mean(best)),
      "random_k": float(np.mean(rand)),
  }


def capture(res: dict, scorer: str) -> float:
  """(top_k - random_k) / (best_k - random_k) of a run_values result: 1 =
  the scorer's top k are the k most valuable tiles, 0 = no better than
  chance."""
  return (res[scorer]["top_k"] - res["random_k"]) / (
      res["best_k"] - res["random_k"]
  )


def mean_over_seeds(per_seed: list[dict]) -> dict:
  """Element-wise mean of run_values(...) results (None entries skipped)."""

  def avg(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None

  out = {
      s: {m: avg([r[s][m] for r in per_seed]) for m in ("spearman", "top_k")}
      for s in SCORERS
  }
  for key in ("best_k", "random_k"):
    out[key] = avg([r[key] for r in per_seed])
  out["k"] = per_seed[0]["k"]
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  selection_swap.add_run_flags(p, budget=0.125)
  p.add_argument(
      "--methods",
      default="",
      help="comma-separated methods to keep (default: all)",
  )
  p.add_argument("--out", required=True)
  a = p.parse_args(argv)
  flags.FLAGS.mark_as_parsed()
  keep = set(a.methods.split(",")) if a.methods else None
  cells: dict[str, dict[int, str]] = {}
  for seed, by_method in selection_swap.runs_by_seed(a).items():
    for m, d in by_method.items():
      if keep is None or m in keep:
        cells.setdefault(m, {})[seed] = d
  per_run, rows, config, seeds = {}, [], None, set()
  for method, by_seed in cells.items():
    per_run[method] = {}
    for seed, workdir in sorted(by_seed.items()):
      print(f"== {method} seed {seed}: {workdir}", flush=True)
      run = selection_swap.load_run(method, workdir)
      config = run.config
      seeds.add(seed)
      per_run[method][str(seed)] = run_values(run, a.split)
    mean = mean_over_seeds(list(per_run[method].values()))
    for s in SCORERS:
      rows.append(
          {
              "run": method,
              "seeds": len(by_seed),
              "scorer": s,
              **mean[s],
              "capture": capture(mean, s),
              "best_k": mean["best_k"],
              "random_k": mean["random_k"],
          }
      )
  print(
      f"{a.split}: scorers of the tiles each run did not buy vs the loss "
      "drop from buying each one (Spearman; summed drop of the scorer's "
      "top k, of the best k, of k at random; capture = (top_k - random_k)"
      " / (best_k - random_k))"
  )
  reporting.print_table(
      rows,
      [
          "run",
          "seeds",
          "scorer",
          "spearman",
          "top_k",
          "capture",
          "best_k",
          "random_k",
      ],
  )
  reporting.write_json(
      a.out,
      selection_swap.results_stem(a, config, seeds) + ".json",
      {
          "split": a.split,
          "table": rows,
          "per_seed": per_run,
          "runs": {
              m: {str(s): d for s, d in v.items()} for m, v in cells.items()
          },
      },
      datasets={"data": config.data.path},
  )


if __name__ == "__main__":
  main()
