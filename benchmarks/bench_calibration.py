"""Do vaelens' error bars hold when the source is a real galaxy? Coverage over many mocks.

Mocks (:mod:`calibration_mocks`): EPL + shear lenses from a stated population, sources that are
real HST/JWST galaxies the VAE never trained on (held-out test split of ``cosmos_btk`` and the
held-out ``extra_hst`` stamps) with random rotation, flip, size, position and S/N, the real F390W
PSF, background + Poisson noise, rendered by lenstronomy at supersampling 5; a control set whose
sources are VAE draws. Every mock is fitted by ``vaelens batch`` 's engine
(:func:`vaelens.survey.fit_catalog`, i.e. :func:`vaelens.infer.fit_lens`), MAP + Laplace by
default (``--method``), EPL + shear, no lens light, VAE source.

Reported per lens parameter (``theta_E, gamma, e1, e2, gamma1, gamma2``) and per set (real /
control): coverage of the 68% and 95% intervals, median and spread of (estimate - truth) / sigma,
the rate of catastrophic failures (``|theta_E error| > 5%`` or ``gamma`` at a prior bound), the
reduced chi^2, and the source: the fraction of source-plane pixels inside the region the arcs
constrain (rays from image pixels where the true lensed source has S/N > 3) where the true source
lies within 1 and 2 posterior standard deviations of the posterior mean (draws of the fit's
``posterior.nc``, evaluated on the MAP source footprint).

Run (resumable: mocks and fits already in ``--work`` are reused)::

    python benchmarks/bench_calibration.py --n-real 100 --n-control 30 --tag baseline

Writes ``benchmarks/results/bench_calibration_<tag>.json`` and
``benchmarks/results/bench_calibration_<tag>.png`` (coverage per parameter).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import calibration_mocks as cm  # noqa: E402

LENS_PARAMS = ("theta_E", "gamma", "e1", "e2", "gamma1", "gamma2")
N_SOURCE_DRAWS = 200


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-real", type=int, default=100, help="real-source mocks")
    p.add_argument("--n-control", type=int, default=30, help="VAE-source control mocks")
    p.add_argument("--work", type=Path, default=Path("/tmp/vaelens_calibration"))
    p.add_argument("--tag", default="baseline", help="name of this model variant")
    p.add_argument("--method", default="map", choices=("map", "svi", "nuts"))
    p.add_argument("--workers", type=int, default=1, help="Dask workers (0: in this process)")
    p.add_argument("--starts", type=int, default=8)
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra vaelens fit option for every mock (repeatable)",
    )
    p.add_argument(
        "--analyse-only",
        action="store_true",
        help="report on the fits finished so far in --work (no fitting)",
    )
    p.add_argument("--shared", type=Path, default=cm.SHARED)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    if args.n_real < 0 or args.n_control < 0 or args.n_real + args.n_control == 0:
        p.error("--n-real and --n-control must be non-negative and not both zero")
    if args.workers < 0 or args.starts < 1:
        p.error("--workers must be >= 0 and --starts >= 1")
    for opt in args.option:
        if "=" not in opt:
            p.error(f"--option {opt!r}: expected NAME=VALUE")
    if args.n_real and not cm.shared_available(args.shared):
        p.error(f"real-source mocks need the shared data at {args.shared}")
    return args


def make_mocks(args) -> list[dict]:
    """Write the mocks (skipping existing ones) and return the catalogue rows."""
    psf = cm.load_psf(args.shared)
    rows = []
    sets = []
    if args.n_real:
        sets.append(("real", cm.load_real_sources(args.shared), range(args.n_real)))
    if args.n_control:
        control = cm.vae_sources(args.n_control, seed=7)
        sets.append(("control", control, range(100000, 100000 + args.n_control)))
    for kind, sources, seeds in sets:
        for seed in seeds:
            mid = f"{kind}_{seed:06d}"
            folder = args.work / "mocks" / mid
            if not (folder / "truth.json").exists():
                cm.write_mock(folder, cm.make_mock(seed, sources, psf))
            rows.append(
                {
                    "id": mid,
                    "image": str(folder / "image.fits"),
                    "psf": str(folder / "psf.fits"),
                    "truth": str(folder / "truth.json"),
                    "seed": seed,
                }
            )
    return _interleave(rows)


def _interleave(rows: list[dict]) -> list[dict]:
    """Real and control mocks mixed in proportion, so that a partial run has both."""
    real = [r for r in rows if r["id"].startswith("real")]
    control = [r for r in rows if r["id"].startswith("control")]
    if not real or not control:
        return rows
    order = sorted(
        [(i / len(real), 0, r) for i, r in enumerate(real)]
        + [(i / len(control), 1, r) for i, r in enumerate(control)],
        key=lambda t: (t[0], t[1]),
    )
    return [r for _, _, r in order]


def run_fits(args, rows) -> Path:
    from vaelens.survey import fit_catalog

    catalog = args.work / "catalog.csv"
    with open(catalog, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    options = {
        "method": args.method,
        "lens_light": False,
        "shear": True,
        "mass_profile": "epl",
        "starts": args.starts,
    }
    for opt in args.option:
        name, value = opt.split("=", 1)
        options[name] = value
    out = args.work / f"fits_{args.tag}"
    fit_catalog(catalog, out, options=options, workers=args.workers, progress=True)
    return out


def _truth(row) -> dict:
    return json.loads(Path(row["truth"]).read_text())["parameters"]


def source_coverage(fit_dir: Path, truth: dict, source_image: np.ndarray) -> dict | None:
    """Fractions of constrained source-plane pixels whose truth is within 1 / 2 posterior sd."""
    import arviz as az
    import jax.numpy as jnp
    from lenstronomy.LightModel.light_model import LightModel

    from vaelens.lensing import EPL, ExternalShear, PixelatedSource, PixelGrid, ray_shoot

    path = fit_dir / "posterior.nc"
    if not path.exists():
        return None
    post = az.from_netcdf(str(path)).posterior
    if "source" not in post:
        return None
    params = json.loads((fit_dir / "summary.json").read_text())["parameters"]
    best = {k: params[k]["best_fit"] for k in ("source_center_x", "source_center_y", "source_size")}

    def flat(name):
        return np.asarray(post[name].values, float).reshape(-1, *post[name].shape[2:])

    imgs = flat("source")
    n = len(imgs)
    pick = np.linspace(0, n - 1, min(n, N_SOURCE_DRAWS)).astype(int)
    cx, cy, size = flat("source_center_x"), flat("source_center_y"), flat("source_size")
    angle = flat("source_angle") if "source_angle" in post else np.zeros(n)
    # the reconstruction's grid: 64x64 pixels on the MAP source footprint
    m = 64
    bx, by, bs = (float(best[k]) for k in ("source_center_x", "source_center_y", "source_size"))
    u = (np.arange(m) - (m - 1) / 2) * bs / m
    gx, gy = np.meshgrid(bx + u, by + u)
    draws = []
    for i in pick:
        npx = imgs[i].shape[-1]
        src = PixelatedSource(
            jnp.asarray(imgs[i]), cx[i], cy[i], size[i], angle[i], 1.0 / (size[i] / npx) ** 2
        )
        draws.append(np.asarray(src.surface_brightness(jnp.asarray(gx), jnp.asarray(gy))))
    draws = np.asarray(draws)
    mean, sd = draws.mean(axis=0), draws.std(axis=0)
    kw = cm.source_kwargs(
        cm.SourceStamp("truth", source_image, 0.0, 1.0, 0.0),
        {**truth, "source_r50": truth["source_scale"]},
        amp=truth["source_amp"],
    )
    true_sb = LightModel(["INTERPOL"]).surface_brightness(gx, gy, [kw])
    # constrained region: source pixels hit by rays from image pixels where the true lensed
    # source is above 3 sigma (the noise-free mock is re-rendered from the truth)
    grid = PixelGrid((cm.NUM_PIX, cm.NUM_PIX), cm.PIXEL_SCALE)
    xi, yi = grid.coordinates_numpy()
    lens = (
        EPL(*(truth[k] for k in ("theta_E", "gamma", "e1", "e2", "center_x", "center_y"))),
        ExternalShear(truth["gamma1"], truth["gamma2"]),
    )
    model = np.asarray(
        cm._image_model(cm.load_psf()).image(kwargs_lens=cm.lens_kwargs(truth), kwargs_source=[kw])
    )
    noise = np.sqrt(cm.BKG_RMS**2 + np.clip(model, 0, None) / cm.EXPOSURE_TIME)
    bright = model > 3 * noise
    sx, sy = (np.asarray(a) for a in ray_shoot(jnp.asarray(xi), jnp.asarray(yi), lens))
    col = np.floor((sx[bright] - (bx - bs / 2)) / (bs / m)).astype(int)
    row = np.floor((sy[bright] - (by - bs / 2)) / (bs / m)).astype(int)
    ok = (col >= 0) & (col < m) & (row >= 0) & (row < m)
    hit = np.zeros((m, m), bool)
    hit[row[ok], col[ok]] = True
    if hit.sum() < 5:
        return None
    z = np.abs(true_sb - mean)[hit] / np.maximum(sd[hit], 1e-300)
    return {
        "pixels": int(hit.sum()),
        "within_1sd": float(np.mean(z <= 1.0)),
        "within_2sd": float(np.mean(z <= 2.0)),
    }


def _estimates(fit_dir: Path) -> dict[str, tuple[float, float]]:
    """``(estimate, sigma)`` by parameter: MAP +- Laplace sd, or posterior mean +- sd."""
    summary = json.loads((fit_dir / "summary.json").read_text())
    out = {}
    for name, p in summary["parameters"].items():
        if summary.get("method") == "map" and p.get("map") is not None:
            out[name] = (float(p["map"]), float(p["laplace_sd"]))
        else:
            out[name] = (float(p["mean"]), float(p["sd"]))
    return out


def analyse(args, rows, fit_out: Path) -> dict:
    import pandas as pd

    from vaelens.infer.calibration import coverage_table

    res = pd.read_csv(fit_out / "results.csv", dtype={"id": str}).set_index("id")
    report: dict = {}
    for kind in ("real", "control"):
        planned = [r for r in rows if r["id"].startswith(kind)]
        mine = [r for r in planned if r["id"] in res.index]
        if not mine:
            continue
        est = {p: [] for p in LENS_PARAMS}
        sds = {p: [] for p in LENS_PARAMS}
        tru = {p: [] for p in LENS_PARAMS}
        failed, catastrophic, chi2, src_cov, per_mock = 0, 0, [], [], []
        for r in mine:
            truth = _truth(r)
            ok = r["id"] in res.index and res.loc[r["id"], "status"] == "ok"
            if not ok:
                failed += 1
            point = _estimates(fit_out / r["id"]) if ok else {}
            for p in LENS_PARAMS:
                tru[p].append(truth[p])
                est[p].append(point.get(p, (np.nan, np.nan))[0])
                sds[p].append(point.get(p, (np.nan, np.nan))[1])
            if not ok:
                continue
            te_err = abs(est["theta_E"][-1] - truth["theta_E"]) / truth["theta_E"]
            g = est["gamma"][-1]
            at_bound = g < 1.5 + 0.01 or g > 2.5 - 0.01
            bad = te_err > 0.05 or at_bound
            catastrophic += int(bad)
            chi2.append(float(res.loc[r["id"], "reduced_chi2"]))
            from astropy.io import fits

            stamp = np.asarray(fits.getdata(Path(r["truth"]).parent / "source.fits"), float)
            sc = source_coverage(fit_out / r["id"], truth, stamp)
            if sc is not None:
                src_cov.append(sc)
            per_mock.append(
                {
                    "id": r["id"],
                    "source": truth["source_name"],
                    "peak_snr": truth["peak_snr"],
                    "reduced_chi2": chi2[-1],
                    "catastrophic": bool(bad),
                    "z": {
                        p: (est[p][-1] - tru[p][-1]) / sds[p][-1] if sds[p][-1] > 0 else None
                        for p in LENS_PARAMS
                    },
                    "source_coverage": sc,
                }
            )
        table = coverage_table(est, sds, tru)
        n = len(mine)
        report[kind] = {
            "n_mocks": n,
            "n_planned": len(planned),
            "failed": failed,
            "catastrophic": catastrophic,
            "catastrophic_rate": catastrophic / max(n - failed, 1),
            "reduced_chi2": {
                "median": float(np.median(chi2)) if chi2 else None,
                "range": [float(np.min(chi2)), float(np.max(chi2))] if chi2 else None,
            },
            "parameters": table,
            "source_pixels": {
                "n_mocks": len(src_cov),
                "within_1sd_median": float(np.median([s["within_1sd"] for s in src_cov]))
                if src_cov
                else None,
                "within_2sd_median": float(np.median([s["within_2sd"] for s in src_cov]))
                if src_cov
                else None,
                "within_1sd_pooled": float(
                    np.sum([s["within_1sd"] * s["pixels"] for s in src_cov])
                    / np.sum([s["pixels"] for s in src_cov])
                )
                if src_cov
                else None,
                "within_2sd_pooled": float(
                    np.sum([s["within_2sd"] * s["pixels"] for s in src_cov])
                    / np.sum([s["pixels"] for s in src_cov])
                )
                if src_cov
                else None,
            },
            "mocks": per_mock,
        }
    return report


def print_table(report: dict, tag: str) -> None:
    print(f"\n== calibration: {tag} ==")
    for kind, rep in report.items():
        print(
            f"\n[{kind}] {rep['n_mocks']} mocks, {rep['failed']} failed, "
            f"{rep['catastrophic']} catastrophic; reduced chi2 median "
            f"{rep['reduced_chi2']['median']}"
        )
        print(f"{'param':<8} {'n':>4} {'cov68':>6} {'cov95':>6} {'med z':>7} {'spread':>7}")
        for p, row in rep["parameters"].items():
            c = row["coverage"]
            print(
                f"{p:<8} {row['n']:>4} {c['0.68']:>6.2f} {c['0.95']:>6.2f} "
                f"{row['median_z']:>7.2f} {row['spread_z']:>7.2f}"
            )
        sp = rep["source_pixels"]
        print(
            f"source pixels ({sp['n_mocks']} mocks): within 1 sd {sp['within_1sd_pooled']}, "
            f"within 2 sd {sp['within_2sd_pooled']}"
        )


def plot(report: dict, path: Path, tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, level in zip(axes, ("0.68", "0.95"), strict=True):
        nominal = float(level)
        x = np.arange(len(LENS_PARAMS))
        for off, (kind, rep) in zip((-0.15, 0.15), report.items(), strict=False):
            vals = [rep["parameters"][p]["coverage"][level] for p in LENS_PARAMS]
            n = max(rep["n_mocks"] - rep["failed"], 1)
            err = np.sqrt(nominal * (1 - nominal) / n)
            ax.errorbar(x + off, vals, yerr=err, fmt="o", label=f"{kind} ({n} mocks)")
        band = (0.60, 0.76) if level == "0.68" else (0.90, 0.98)
        ax.axhspan(*band, color="0.9", zorder=0, label="target")
        ax.axhline(nominal, color="k", lw=0.8)
        ax.set_xticks(x, LENS_PARAMS)
        ax.set_title(f"{int(nominal * 100)}% interval coverage")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("fraction of mocks with truth inside")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"vaelens calibration ({tag})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = make_mocks(args)
    t_mocks = time.perf_counter() - t0
    if args.analyse_only:
        fit_out = args.work / f"fits_{args.tag}"
        if not (fit_out / "results.csv").exists():
            raise SystemExit(f"--analyse-only: no fits in {fit_out}")
    else:
        fit_out = run_fits(args, rows)
    t_fits = time.perf_counter() - t0 - t_mocks
    report = analyse(args, rows, fit_out)
    print_table(report, args.tag)
    from vaelens.infer.convert import package_versions

    out = {
        "tag": args.tag,
        "method": args.method,
        "options": args.option,
        "population": cm.POPULATION,
        "image": {
            "num_pix": cm.NUM_PIX,
            "pixel_scale": cm.PIXEL_SCALE,
            "bkg_rms": cm.BKG_RMS,
            "exposure_time": cm.EXPOSURE_TIME,
            "lenstronomy_supersampling": cm.SUPERSAMPLING,
        },
        "command": "python benchmarks/bench_calibration.py " + " ".join(argv or sys.argv[1:]),
        "seconds": {"mocks": t_mocks, "fits": t_fits},
        "versions": package_versions(),
        "results": report,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"bench_calibration_{args.tag}.json").write_text(json.dumps(out, indent=1))
    plot(report, args.out / f"bench_calibration_{args.tag}.png", args.tag)
    print(f"\nwrote {args.out / f'bench_calibration_{args.tag}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
