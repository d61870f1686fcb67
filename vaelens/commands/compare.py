"""``vaelens compare MAP_DIR NUTS_DIR``: BFGS (MAP + Laplace) against the sampled posterior.

Per lens parameter: the MAP value +- Laplace sigma (from ``MAP_DIR/summary.json``), the
posterior mean +- sd and 16/50/84 percentiles (from ``NUTS_DIR/posterior.nc``), the truth when
either folder (or ``--truth``) knows it, the difference MAP - mean in units of the posterior sd,
and the chi^2 of both best fits. Writes ``comparison.csv``, ``comparison.json`` and
``comparison.png`` into ``--out`` (default ``NUTS_DIR/comparison``) and prints the table.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.commands._common import cli_error, format_table
from vaelens.infer.compare import difference_in_sd

#: Parameters shown by default, in this order, when present in both fits.
DEFAULT_PARAMETERS = ("theta_E", "gamma", "e1", "e2", "center_x", "center_y", "gamma1", "gamma2")


def comparison_table(
    map_summary: dict[str, Any],
    posterior,
    names: list[str] | None = None,
    truth: dict[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Rows ``{name: {map, map_sd, mean, sd, q16, q50, q84, truth, diff_sigma, sd_ratio}}``.

    ``diff_sigma`` is (MAP - mean) / sd in units of the posterior sd
    (:func:`vaelens.infer.compare.difference_in_sd`), the number the comparison figure shows;
    ``sd_ratio`` is the Laplace sigma over the posterior sd.

    Parameters
    ----------
    map_summary
        ``summary.json`` of a ``--method map`` fit (its ``parameters`` hold ``map`` and
        ``laplace_sd``).
    posterior
        ArviZ InferenceData of the sampled fit.
    names
        Parameters to compare (default: :data:`DEFAULT_PARAMETERS` present in both).
    truth
        True values (optional).
    """
    params = map_summary.get("parameters", {})
    post = posterior.posterior
    if names is None:
        names = [n for n in DEFAULT_PARAMETERS if n in params and n in post.data_vars]
    rows: dict[str, dict[str, float]] = {}
    for n in names:
        p = params.get(n, {})
        draws = np.asarray(post[n].values, float).reshape(-1)
        mean, sd = float(draws.mean()), float(draws.std(ddof=1))
        q16, q50, q84 = (float(v) for v in np.percentile(draws, [16, 50, 84]))
        m = p.get("map", p.get("best_fit"))
        msd = p.get("laplace_sd", p.get("sd"))
        row = {
            "map": np.nan if m is None else float(m),
            "map_sd": np.nan if msd is None else float(msd),
            "mean": mean,
            "sd": sd,
            "q16": q16,
            "q50": q50,
            "q84": q84,
            "truth": np.nan,
        }
        row["diff_sigma"] = difference_in_sd(row["map"], mean, sd)
        row["sd_ratio"] = row["map_sd"] / sd if sd > 0 else np.nan
        if truth and n in truth and np.ndim(truth[n]) == 0:
            row["truth"] = float(truth[n])
        rows[n] = row
    return rows


def _same_folder(a: str | Path, b: str | Path) -> bool:
    """True when two spellings name one folder (after resolving ``..`` and symbolic links)."""
    pa, pb = Path(a).expanduser().resolve(), Path(b).expanduser().resolve()
    return pa == pb or os.path.samefile(pa, pb)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vaelens compare``."""
    from vaelens import plotting
    from vaelens.commands._common import require_file
    from vaelens.io_results import atomic_output_dir, check_output_dir, read_fit_folder, write_json

    out = Path(args.out) if args.out else Path(args.nuts_dir) / "comparison"
    for d in (args.map_dir, args.nuts_dir):
        if not Path(d).is_dir():
            raise cli_error(f"fit folder {d} not found")
    if _same_folder(args.map_dir, args.nuts_dir):
        raise cli_error(
            f"{args.map_dir} and {args.nuts_dir} are the same folder: give the output of "
            "'vaelens fit --method map' first and a sampled fit (nuts, hmc or svi) second"
        )
    check_output_dir(out, force=args.force)
    _, map_summary = read_fit_folder(args.map_dir)
    posterior, nuts_summary = read_fit_folder(args.nuts_dir)
    if map_summary.get("method") != "map":
        raise cli_error(
            f"{args.map_dir} is a '{map_summary.get('method')}' fit; the first folder must be "
            "the output of 'vaelens fit --method map'"
        )
    truth = None
    if args.truth:
        from vaelens.commands.simulate import load_truth

        truth = load_truth(require_file(args.truth, "truth file"))
    else:
        truth = map_summary.get("truth") or nuts_summary.get("truth")
    rows = comparison_table(map_summary, posterior, truth=truth)
    if not rows:
        raise cli_error("the two fits share no lens parameter")
    chi2 = {
        "map": map_summary.get("fit", {}),
        nuts_summary.get("method", "posterior"): nuts_summary.get("fit", {}),
    }
    timings = {
        "map": map_summary.get("timings_s", {}),
        nuts_summary.get("method", "posterior"): nuts_summary.get("timings_s", {}),
    }
    method = nuts_summary.get("method", "posterior").upper()
    with atomic_output_dir(out, force=args.force) as tmp:
        import pandas as pd

        pd.DataFrame(rows).T.to_csv(tmp / "comparison.csv", index_label="parameter")
        write_json(
            tmp / "comparison.json",
            {
                "map_dir": str(Path(args.map_dir).resolve()),
                "posterior_dir": str(Path(args.nuts_dir).resolve()),
                "parameters": rows,
                "fit": chi2,
                "timings_s": timings,
            },
        )
        fig = plotting.plot_comparison(
            rows, labels=("BFGS (MAP $\\pm$ Laplace)", f"{method} (mean $\\pm$ sd)")
        )
        fig.savefig(tmp / "comparison.png", dpi=110)
    table_rows = [{"parameter": n, **r} for n, r in rows.items()]
    cols = ["map", "map_sd", "mean", "sd", "q16", "q50", "q84", "diff_sigma", "sd_ratio"]
    if any(np.isfinite(r["truth"]) for r in rows.values()):
        cols.append("truth")
    sys.stdout.write(format_table(table_rows, cols, index="parameter"))
    for name, fit in chi2.items():
        if fit:
            sys.stdout.write(
                f"{name}: chi2 = {fit.get('chi2', float('nan')):.1f}, reduced chi2 = "
                f"{fit.get('reduced_chi2', float('nan')):.3f}, total time "
                f"{timings[name].get('inference_total', float('nan')):.1f} s\n"
            )
    sys.stdout.write(f"wrote {out}/ (comparison.csv, comparison.json, comparison.png)\n")
    return 0
