"""The SR grid's figure (fidelity vs downstream score per task) and its
printed table of cells and correlations."""

from __future__ import annotations

from crossscale import reporting


def plot(results: dict, path: str, metric: str = "psnr") -> str:
  """Fidelity (`metric`) vs downstream score, one panel per task: one colour
  per downstream model, SR models labelled, HR (dashed) and LR-up (dotted)
  scores as horizontal lines."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  cells = results["cells"]
  tasks = sorted({c["task"] for c in cells})
  fig, axes = plt.subplots(
      1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False
  )
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for ax, task in zip(axes[0], tasks):
    tc = [c for c in cells if c["task"] == task]
    for i, ds in enumerate(sorted({c["downstream"] for c in tc})):
      col = colors[i % len(colors)]
      dc = [c for c in tc if c["downstream"] == ds]
      ax.scatter(
          [c[metric] for c in dc], [c["score"] for c in dc], color=col, label=ds
      )
      for c in dc:
        ax.annotate(
            c["sr"],
            (c[metric], c["score"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
      ax.axhline(dc[0]["score_hr"], color=col, ls="--", lw=1)
      ax.axhline(dc[0]["score_lr_up"], color=col, ls=":", lw=1)
    rho = results["correlation"].get(task, {}).get("all", {}).get(metric, {})
    extra = (
        f" (Spearman {rho['spearman']:.2f})"
        if rho.get("spearman") is not None
        else ""
    )
    ax.set_title(f"{task}{extra}", fontsize=10)
    ax.set_xlabel(f"SR {metric} on test")
    ax.set_ylabel(f"downstream {tc[0]['score_name']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="--- HR   ... LR-up", title_fontsize=7)
  fig.suptitle(
      f"{results['dataset']}: SR fidelity vs downstream score", fontsize=11
  )
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def print_results(results: dict) -> None:
  reporting.print_table(
      results["cells"],
      [
          "task",
          "downstream",
          "sr",
          "psnr",
          "ssim",
          "randfeat_dist",
          "score_name",
          "score",
          "score_hr",
          "score_lr_up",
          "gap_recovered",
      ],
  )
  for task, c in results["correlation"].items():
    for block in (
        "all",
        next(k for k in c if k.startswith("top") and not k.endswith("models")),
    ):
      for metric, r in c[block].items():
        if r["pearson"] is not None:
          iv = "".join(
              f" [{r[k][0]:+.2f}, {r[k][1]:+.2f}]" if r.get(k) else ""
              for k in ("pearson_interval", "spearman_interval")
          )
          print(
              f"{task:15s} {block:5s} {metric:14s} n={r['n']:2d} pearson "
              f"{r['pearson']:+.3f} spearman {r['spearman']:+.3f}{iv}"
          )
        else:
          print(
              f"{task:15s} {block:5s} {metric:14s} n={r['n']:2d} "
              f"({r.get('note')})"
          )
  for fam, m in results.get("sr_models", {}).items():
    if m.get("psnr_gain_interval"):
      lo, hi = m["psnr_gain_interval"]
      print(
          f"{fam:10s} dPSNR vs bicubic {m['psnr_gain']:+.2f} "
          f"[{lo:+.2f}, {hi:+.2f}]"
      )
  for c in results["cells"]:
    if c.get("gap_recovered_interval"):
      print(c["gap_verdict"])
