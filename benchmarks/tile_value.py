r"""Which scorer ranks the tiles a run did not buy by what buying them is worth?

  python -m benchmarks.tile_value --work_dir RUNS --budget 0.125 --out /tmp/tv
  python -m benchmarks.tile_value --runs ours=DIR --out /tmp/tv

For each test scene, a trained cross-scale run (a training workdir, or the
finished cells of a `benchmarks.tradeoff --work_dir` sweep at `--budget`)
buys its k tiles by its own policy. Every tile it did not buy then gets:
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
Spearman rank correlation, and `captured`, the summed value of the k tiles
the scorer ranks first over that of the k most valuable (scenes where no
tile lowers the loss are left out of `captured`). Prints a table (means
over scenes, then over seeds) and writes OUT/tile_value.json.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from scipy import stats

from benchmarks import common as bench
from benchmarks import selection_swap
from crossscale import input_pipeline, metrics, tiles

SCORERS = ("first_order", "own_policy", "lr_detail", "hr_detail")


def scene_tile_values(model, params, batch, task: str) -> dict:
  """{"bought": [B, N] bool, "value": [B, N], and each of SCORERS: [B, N]}
  for a batch {"lr", "hr", "labels"} (module docstring)."""
  lr, hr, labels = batch["lr"], batch["hr"], batch["labels"]
  if model.zero_hr_gain:
    raise ValueError("tile values of zero_hr_gain runs are not supported "
                     "(config.model.zero_hr_gain must be 0)")

  def apply(method, *args):
    return model.apply({"params": params}, *args, method=method,
                       rngs={"selection": jax.random.key(0)})

  B, N = lr.shape[0], model.n_tiles
  plan = apply("plan", {"lr": lr})
  idx, valid = plan["tile_indices"], plan["tile_valid"]      # [B, k]
  bought = jnp.zeros((B, N), bool).at[
      jnp.arange(B)[:, None], idx].set(valid)
  context, _ = apply("lr_context", lr)
  hr_tiles = tiles.to_tiles(hr, model.grid)                  # [B, N, t, t, C]
  latents = apply("encode_tiles", hr_tiles)                  # [B, N, D_hr]
  every = jnp.broadcast_to(jnp.arange(N), (B, N))

  def losses(weight):                                        # [B, N] -> [B]
    tokens = apply("complete", context, every, weight, latents)
    logits, _ = apply("head_logits", tokens, context)
    return metrics.example_losses(logits, labels, task)

  w0 = bought.astype(jnp.float32)
  base = losses(w0)
  grad = jax.grad(lambda w: losses(w).sum())(w0)             # [B, N]
  with_tile = jax.vmap(lambda t: losses(w0.at[:, t].set(1.0)),
                       out_axes=1)(jnp.arange(N))            # [B, N]
  return {"bought": bought, "value": base[:, None] - with_tile,
          "first_order": -grad, "own_policy": plan["tile_logits"],
          "lr_detail": tiles.tile_statistic(lr, model.grid),
          "hr_detail": tiles.hr_detail(hr_tiles, hr.shape[1] // lr.shape[1])}


def agreement(score: np.ndarray, value: np.ndarray, m: int):
  """(Spearman rho, captured) of one scene's scorer `[U]` against the tiles'
  values `[U]`: captured = value of the scorer's top m / value of the best
  m (None when no tile has positive value; rho None for constant input)."""
  rho = (None if np.ptp(score) == 0 or np.ptp(value) == 0
         else float(stats.spearmanr(score, value).statistic))
  best = np.sort(value)[::-1][:m].sum()
  top = value[np.argsort(-score, kind="stable")[:m]].sum()
  return rho, (float(top / best) if best > 0 else None)


def run_values(run: selection_swap.Run, split: str = "test") -> dict:
  """{scorer: {"spearman", "captured"}} means over the scenes of `split`,
  plus "scenes", "k", "mean_value" (of the tiles not bought) and
  "best_value" (of each scene's most valuable one)."""
  cfg = run.config
  k = run.model.k()
  fn = jax.jit(lambda p, b: scene_tile_values(run.model, p, b, cfg.task))
  per = {s: ([], []) for s in SCORERS}
  means, bests = [], []
  for batch in input_pipeline.eval_dataset(
      cfg.data.path, split, batch_size=int(cfg.batch_size),
      fields=("lr", "hr", "labels")):
    out = jax.tree.map(np.asarray, fn(run.params, {
        f: batch[f] for f in ("lr", "hr", "labels")}))
    for b in np.flatnonzero(np.asarray(batch["valid"])):
      free = ~out["bought"][b]
      value = out["value"][b][free]
      means.append(value.mean())
      bests.append(value.max())
      for s in SCORERS:
        rho, cap = agreement(out[s][b][free], value, k)
        for lst, x in zip(per[s], (rho, cap)):
          if x is not None:
            lst.append(x)
  res = {s: {"spearman": float(np.mean(r)) if r else None,
             "captured": float(np.mean(c)) if c else None}
         for s, (r, c) in per.items()}
  return {**res, "scenes": len(means), "k": k,
          "mean_value": float(np.mean(means)),
          "best_value": float(np.mean(bests))}


def mean_over_seeds(per_seed: list[dict]) -> dict:
  """Element-wise mean of run_values(...) results (None entries skipped)."""
  def avg(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None
  out = {s: {m: avg([r[s][m] for r in per_seed])
             for m in ("spearman", "captured")} for s in SCORERS}
  for key in ("mean_value", "best_value"):
    out[key] = avg([r[key] for r in per_seed])
  out["k"] = per_seed[0]["k"]
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--runs", default="",
                 help="comma-separated NAME=WORKDIR of trained runs")
  p.add_argument("--work_dir", action="append", default=[],
                 help="a tradeoff sweep's --work_dir (repeatable)")
  p.add_argument("--budget", type=float, default=0.125,
                 help="with --work_dir: the budget whose cells to score")
  p.add_argument("--seeds", default="",
                 help="with --work_dir: comma-separated seeds to keep")
  p.add_argument("--methods", default="",
                 help="with --work_dir: comma-separated methods to keep")
  p.add_argument("--split", default="test")
  p.add_argument("--out", required=True)
  a = p.parse_args(argv)
  flags.FLAGS.mark_as_parsed()
  if bool(a.runs) == bool(a.work_dir):
    raise ValueError("give either --runs NAME=DIR,... or --work_dir (a "
                     "tradeoff sweep) with --budget")
  cells: dict[str, dict[int, str]] = {}
  if a.runs:
    for item in a.runs.split(","):
      name, sep, workdir = item.partition("=")
      if not sep:
        raise ValueError(f"--runs item {item!r}: expected NAME=WORKDIR")
      cells.setdefault(name, {})[0] = workdir
  else:
    seeds = [int(x) for x in a.seeds.split(",")] if a.seeds else None
    keep = set(a.methods.split(",")) if a.methods else None
    for seed, by_method in selection_swap.find_cells(
        a.work_dir, a.budget, seeds).items():
      for m, d in by_method.items():
        if keep is None or m in keep:
          cells.setdefault(m, {})[seed] = d
  per_run, rows = {}, []
  for method, by_seed in cells.items():
    per_run[method] = {}
    for seed, workdir in sorted(by_seed.items()):
      print(f"== {method} seed {seed}: {workdir}", flush=True)
      per_run[method][str(seed)] = run_values(
          selection_swap.load_run(method, workdir), a.split)
    mean = mean_over_seeds(list(per_run[method].values()))
    for s in SCORERS:
      rows.append({"run": method, "seeds": len(by_seed), "scorer": s,
                   **mean[s], "mean_value": mean["mean_value"],
                   "best_value": mean["best_value"]})
  print(f"{a.split}: scorers of the tiles each run did not buy vs the loss "
        "drop from buying each (Spearman; value of the scorer's top k / "
        "of the best k)")
  bench.print_table(rows, ["run", "seeds", "scorer", "spearman", "captured",
                           "mean_value", "best_value"])
  bench.write_json(a.out, "tile_value.json", {
      "machine": bench.machine(), "split": a.split, "table": rows,
      "per_seed": per_run,
      "runs": {m: {str(s): d for s, d in v.items()}
               for m, v in cells.items()}})


if __name__ == "__main__":
  main()
