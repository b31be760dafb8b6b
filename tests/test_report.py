"""The report folder: JSON round trip, Markdown tables, and readable PNG figures."""

import json
import math

import numpy as np
import pytest
from matplotlib.image import imread

from pipeline.report import candidate_table_markdown, write_report

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
BLOB_MEANS_4D = np.array([[0.0, 0.0, 0.0, 0.0], [6.0, 1.0, -2.0, 0.5], [-3.0, 5.0, 3.0, -1.0]])
PNG_SIZES = {"bic.png": (400, 700), "clusters.png": (500, 700)}


def make_report(criterion="bic", failed_types=()):
    """A realistic selection over 3 covariance types x K in 1..4, two inits for K=3."""
    rng = np.random.default_rng(0)
    candidates = []
    for covariance_type in ("full", "diag", "spherical"):
        for k in range(1, 5):
            for init in (0, 1) if k == 3 else (0,):
                bic = 20_000.0 - 4_000.0 * min(k, 3) + 150.0 * k + 40.0 * init
                bic += {"full": 0.0, "diag": 800.0, "spherical": 1_500.0}[covariance_type]
                error = None
                if covariance_type in failed_types or (covariance_type, k) == ("full", 4):
                    error = (
                        "Fitting the mixture model failed because some components have "
                        "ill-defined empirical covariance | decrease n_components"
                    )
                candidates.append(
                    {
                        "name": f"{covariance_type}-k{k}-init{init}",
                        "n_components": k,
                        "covariance_type": covariance_type,
                        "init": init,
                        "bic": None if error else bic,
                        "aic": None if error else bic - 300.0,
                        "log_likelihood": None if error else -bic / 2_000.0,
                        "n_iter": int(rng.integers(3, 40)),
                        "converged": error is None,
                        "fit_time_s": float(rng.uniform(0.1, 3.0)),
                        "error": error,
                    }
                )
    candidates[1]["log_likelihood"] = float("nan")
    return {
        "run_id": "2025-06-01T12-00-00-abc123",
        "config_hash": "9f2c4e1d",
        "criterion": criterion,
        "n_rows": 1_200_000,
        "n_features": 4,
        "features": ["amount", "latency_ms", "items", "score"],
        "passes": 57,
        "rows_dropped": 312,
        "timings": {"load": 1.25, "select": 42.5, "total": 44.0},
        "candidates": candidates,
        "chosen": "diag-k3-init0" if "full" in failed_types else "full-k3-init0",
        "clusters": [
            {"cluster": 0, "weight": 0.5, "size": 600_000},
            {"cluster": 1, "weight": 0.3, "size": 360_000},
            {"cluster": 2, "weight": 0.2, "size": 240_000},
        ],
    }


def blob_sample(n_features, n_samples=3_000, seed=0):
    """Three gaussian blobs with distinct full covariances, and the true parameters."""
    rng = np.random.default_rng(seed)
    means = BLOB_MEANS_4D[:, :n_features]
    weights = np.array([0.5, 0.3, 0.2])
    labels = rng.choice(3, size=n_samples, p=weights)
    factors = rng.normal(scale=0.6, size=(3, n_features, n_features))
    covariances = factors @ factors.transpose(0, 2, 1) + 0.3 * np.eye(n_features)
    chol = np.linalg.cholesky(covariances)
    noise = rng.standard_normal((n_samples, n_features))
    X = means[labels] + np.einsum("nij,nj->ni", chol[labels], noise)
    return X, labels, means, covariances


def covariances_as(covariance_type, covariances):
    """True full covariances in scikit-learn's layout for ``covariance_type``."""
    return {
        "full": covariances,
        "tied": covariances.mean(axis=0),
        "diag": np.diagonal(covariances, axis1=1, axis2=2).copy(),
        "spherical": np.diagonal(covariances, axis1=1, axis2=2).mean(axis=1),
    }[covariance_type]


def assert_png(path, min_height, min_width):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] >= min_height and image.shape[1] >= min_width
    # Not a blank canvas.
    assert image[..., :3].std() > 0.05


def table_row(markdown, name):
    (row,) = [line for line in markdown.splitlines() if line.startswith(f"| {name}")
              or line.startswith(f"| **{name}**")]
    return row


@pytest.mark.parametrize("n_features", [4, 2])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_write_report_writes_all_files(tmp_path, covariance_type, n_features):
    report = make_report()
    report["n_features"] = n_features
    report["features"] = report["features"][:n_features]
    X, labels, means, covariances = blob_sample(n_features)
    out_dir = tmp_path / "run" / "report"

    paths = write_report(report, out_dir, sample_X=X, sample_labels=labels, means=means,
                         covariances=covariances_as(covariance_type, covariances),
                         covariance_type=covariance_type)

    assert set(paths) == {"report.json", "report.md", "bic.png", "clusters.png"}
    assert all(isinstance(p, str) for p in paths.values())
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(paths)
    for name, (height, width) in PNG_SIZES.items():
        assert_png(paths[name], height, width)


def test_report_json_round_trips_with_nan_as_null(tmp_path):
    report = make_report()
    report["timings"]["write"] = float("inf")

    paths = write_report(report, tmp_path)

    text = open(paths["report.json"], encoding="utf-8").read()
    assert "NaN" not in text and "Infinity" not in text
    assert text.startswith('{\n  "candidates": [')
    expected = json.loads(json.dumps(report).replace("NaN", "null").replace("Infinity", "null"))
    assert json.loads(text) == expected
    assert json.loads(text)["candidates"][1]["log_likelihood"] is None
    assert json.loads(text)["timings"]["write"] is None


def test_report_json_accepts_numpy_scalars(tmp_path):
    report = make_report()
    report["n_rows"] = np.int64(report["n_rows"])
    report["clusters"][0]["weight"] = np.float32(0.5)
    report["candidates"][0]["bic"] = np.float64("nan")

    paths = write_report(report, tmp_path)

    data = json.load(open(paths["report.json"], encoding="utf-8"))
    assert data["n_rows"] == 1_200_000
    assert data["clusters"][0]["weight"] == 0.5
    assert data["candidates"][0]["bic"] is None


def test_report_markdown_content(tmp_path):
    report = make_report()
    report["model_id"] = "m-42"  # keys beyond the schema are kept in JSON and shown if known
    X, labels, means, covariances = blob_sample(4)

    paths = write_report(report, tmp_path, sample_X=X, sample_labels=labels, means=means,
                         covariances=covariances, covariance_type="full")

    markdown = open(paths["report.md"], encoding="utf-8").read()
    assert markdown.startswith("# ")
    assert report["run_id"] in markdown and report["config_hash"] in markdown
    assert "model id: `m-42`" in markdown
    for candidate in report["candidates"]:
        assert candidate["name"] in markdown
    chosen_row = table_row(markdown, "full-k3-init0")
    assert "✓" in chosen_row and "**full-k3-init0**" in chosen_row
    assert "8,450.0" in chosen_row  # its BIC
    assert sum("✓" in line for line in markdown.splitlines()) == 1
    failed_row = table_row(markdown, "full-k4-init0")
    assert "ill-defined empirical covariance" in failed_row and "failed" in failed_row
    # The error's pipe is escaped, so the row keeps the header's column count.
    header = markdown.splitlines()[[line.startswith("| candidate") for line in
                                    markdown.splitlines()].index(True)]
    assert failed_row.replace("\\|", "").count("|") == header.count("|")
    assert "| 1 | 0.3000 | 360,000 | 30.0 |" in markdown
    assert "Passes over the data: 57" in markdown
    assert "| select | 42.50 |" in markdown and "| write |" not in markdown
    assert "![BIC](bic.png)" in markdown and "![clusters](clusters.png)" in markdown


def test_candidate_table_markdown_alone():
    report = make_report()

    table = candidate_table_markdown(report)

    lines = table.strip().splitlines()
    assert lines[0].startswith("| candidate | n_components | covariance | BIC | AIC |")
    assert lines[0].rstrip().endswith("| error |")
    assert len(lines) == 2 + len(report["candidates"])
    assert "| NaN |" in table_row(table, "full-k2-init0")
    assert "## " not in table and "![" not in table


def test_candidate_table_without_failures_has_no_error_column():
    report = make_report()
    report["candidates"] = [c for c in report["candidates"] if not c["error"]]

    table = candidate_table_markdown(report)

    assert "error" not in table.splitlines()[0]


def test_without_sample_no_clusters_png(tmp_path):
    paths = write_report(make_report(criterion="aic"), str(tmp_path / "new"))

    assert set(paths) == {"report.json", "report.md", "bic.png"}
    markdown = open(paths["report.md"], encoding="utf-8").read()
    assert "clusters.png" not in markdown and "![AIC](bic.png)" in markdown
    assert_png(paths["bic.png"], *PNG_SIZES["bic.png"])


def test_bic_png_when_all_candidates_of_a_type_failed(tmp_path):
    report = make_report(failed_types=("full",))

    paths = write_report(report, tmp_path)

    assert_png(paths["bic.png"], *PNG_SIZES["bic.png"])
    assert "✓" in table_row(open(paths["report.md"], encoding="utf-8").read(), "diag-k3-init0")


def test_bic_png_when_every_candidate_failed(tmp_path):
    report = make_report(failed_types=("full", "diag", "spherical"))

    paths = write_report(report, tmp_path)

    assert_png(paths["bic.png"], *PNG_SIZES["bic.png"])


def test_clusters_png_with_labels_only_and_many_points(tmp_path):
    X, labels, _, _ = blob_sample(4, n_samples=20_000)
    X[0, 1] = math.nan  # rows the caller did not clean are left out of the plot

    paths = write_report(make_report(), tmp_path, sample_X=X, sample_labels=labels)

    assert_png(paths["clusters.png"], *PNG_SIZES["clusters.png"])


@pytest.mark.parametrize("n_samples, n_features", [(0, 4), (1, 4), (500, 1)])
def test_clusters_png_for_degenerate_samples(tmp_path, n_samples, n_features):
    X, labels, means, covariances = blob_sample(n_features, n_samples=n_samples)

    paths = write_report(make_report(), tmp_path, sample_X=X, sample_labels=labels,
                         means=means, covariances=covariances, covariance_type="full")

    assert_png(paths["clusters.png"], *PNG_SIZES["clusters.png"])


def test_covariance_type_defaults_to_chosen_candidate(tmp_path):
    X, labels, means, covariances = blob_sample(4)

    paths = write_report(make_report(), tmp_path, sample_X=X, sample_labels=labels,
                         means=means, covariances=covariances)

    assert_png(paths["clusters.png"], *PNG_SIZES["clusters.png"])


def test_wrong_covariance_shape_says_what_is_expected(tmp_path):
    X, labels, means, covariances = blob_sample(4)

    with pytest.raises(ValueError, match=r"must have shape \(3, 4\)"):
        write_report(make_report(), tmp_path, sample_X=X, sample_labels=labels, means=means,
                     covariances=covariances, covariance_type="diag")


def test_unknown_criterion_is_rejected(tmp_path):
    report = make_report()
    report["criterion"] = "icl"

    with pytest.raises(ValueError, match="criterion"):
        write_report(report, tmp_path)
