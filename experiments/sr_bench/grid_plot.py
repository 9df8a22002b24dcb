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


def plot_sr(results: dict, path: str, target_db: float = 0.5) -> str:
  """An SR-only run (--sr_only): per SR family, PSNR - bicubic PSNR and
  each Frechet distance - bicubic's, with their paired 95% intervals
  (results["sr_models"]); the dashed line marks `target_db`."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fams = [f for f, m in results["sr_models"].items() if "psnr_gain" in m]
  panels = [("psnr_gain", "PSNR - bicubic (dB)")] + [
      (f"{k}_diff", f"{k} - bicubic (lower: closer to HR)")
      for k in ("fid_randfeat", "fid_hrenc")
      if any(f"{k}_diff" in results["sr_models"][f] for f in fams)
  ]
  fig, axes = plt.subplots(
      1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False
  )
  for ax, (key, label) in zip(axes[0], panels):
    rows = [
        (i, results["sr_models"][f])
        for i, f in enumerate(fams)
        if results["sr_models"][f].get(f"{key}_interval")
    ]
    for i, m in rows:
      lo, hi = m[f"{key}_interval"]
      ax.errorbar(
          i, m[key], yerr=[[m[key] - lo], [hi - m[key]]], fmt="o", capsize=4
      )
    ax.axhline(0, color="k", lw=1)
    if key == "psnr_gain":
      ax.axhline(target_db, color="g", ls="--", lw=1, label="target")
      ax.legend(fontsize=8)
    ax.set_xticks(range(len(fams)), fams, rotation=30, fontsize=8)
    ax.set_title(label, fontsize=9)
    ax.grid(alpha=0.3)
  fig.suptitle(
      f"{results['dataset']}: SR vs bicubic on {results['num_test']} "
      f"{results.get('split', 'test')} windows (95% paired intervals)",
      fontsize=10,
  )
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def print_results(results: dict) -> None:
  if not results["cells"]:  # SR only
    fams = results.get("sr_models") or results.get("sr_fidelity", {})
    cols = ["psnr", "ssim", "psnr_gain", "fid_randfeat", "fid_hrenc"]
    reporting.print_table(
        [{"sr": f, **{k: m.get(k) for k in cols}} for f, m in fams.items()],
        ["sr"] + cols,
    )
  else:
    _print_cells(results)
  _print_intervals(results)


def _print_cells(results: dict) -> None:
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


def _print_intervals(results: dict) -> None:
  for fam, m in results.get("sr_models", {}).items():
    for key, fmt in (
        ("psnr_gain", "+.2f"),
        ("fid_randfeat_diff", "+.4f"),
        ("fid_hrenc_diff", "+.4f"),
    ):
      if m.get(f"{key}_interval"):
        lo, hi = m[f"{key}_interval"]
        print(
            f"{fam:10s} {key} vs bicubic {m[key]:{fmt}} "
            f"[{lo:{fmt}}, {hi:{fmt}}]"
        )
  for c in results["cells"]:
    if c.get("gap_recovered_interval"):
      print(c["gap_verdict"])
  for by_ds in results.get("best_psnr_vs_best_score", {}).values():
    for r in by_ds.values():
      print(r["verdict"])
