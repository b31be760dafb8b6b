"""Parquet partitions in: file listing, schema checks, one chunk per file, the scan's checks.

Real Parquet files in tmp_path; dask's default threaded scheduler (no cluster needed).
"""

import decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from parquet_files import blob_partitions, source, write

from pipeline.source import (
    float64_values,
    inspect_schema,
    list_parquet_files,
    load,
    numpy_to_arrow,
    primitive_values,
)
from pipeline.storage import DataError


def test_list_a_single_file(tmp_path):
    path = write(tmp_path / "one.parquet", x=[1.0, 2.0])
    assert list_parquet_files(str(path)) == [str(path)]


def test_list_a_directory_recursively_sorted_skipping_metadata(tmp_path):
    data = tmp_path / "data"
    expected = [write(data / name, x=[1.0]) for name in
                ("date=2024-01-01/part.0.parquet", "date=2024-01-02/part.0.parquet",
                 "part.0.parquet", "part.1.parquet", "z.pq")]
    for name in ("_SUCCESS", "_metadata", "_common_metadata", "notes.txt", ".part.2.parquet",
                 "_part.3.parquet"):
        (data / name).write_bytes(b"not data")
    # folders that writers use for work in progress or checkpoints
    write(data / "_temporary" / "0" / "part.9.parquet", x=[1.0])
    write(data / ".staging" / "part.8.parquet", x=[1.0])
    files = list_parquet_files(str(data))
    assert files == sorted(str(p) for p in expected)


def test_listing_sorts_numbers_naturally(tmp_path):
    for i in (10, 2, 1, 0):
        write(tmp_path / f"part.{i}.parquet", x=[1.0])
    names = [Path(f).name for f in list_parquet_files(str(tmp_path))]
    assert names == ["part.0.parquet", "part.1.parquet", "part.2.parquet", "part.10.parquet"]


def test_list_a_glob(tmp_path):
    for i in (2, 0, 1):
        write(tmp_path / f"part.{i}.parquet", x=[1.0])
    write(tmp_path / "other.parquet", x=[1.0])
    (tmp_path / "_part.9.parquet").write_bytes(b"x")
    files = list_parquet_files(str(tmp_path / "part.*.parquet"))
    assert files == [str(tmp_path / f"part.{i}.parquet") for i in range(3)]


def test_list_a_missing_path_names_it(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as info:
        list_parquet_files(str(missing))
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("pattern", ["*.parquet", "empty"])
def test_list_nothing_found_names_the_path(tmp_path, pattern):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_bytes(b"")
    with pytest.raises(DataError, match="no Parquet files") as info:
        list_parquet_files(str(tmp_path / pattern))
    assert str(tmp_path / pattern) in str(info.value)


# ------------------------------------------------------------------ inspect_schema


def test_inspect_returns_features_and_rows(tmp_path):
    a = write(tmp_path / "a.parquet", x=[1.0, 2.0], y=[1, 2])
    b = write(tmp_path / "b.parquet", x=np.array([3.0], np.float32), y=np.array([4], np.int8))
    features, rows = inspect_schema(source(tmp_path, features=["y", "x"]), [str(a), str(b)])
    assert features == ["y", "x"]
    assert rows == [2, 1]


def test_inspect_feature_missing_from_one_partition(tmp_path):
    a = write(tmp_path / "a.parquet", x=[1.0], y=[2.0])
    b = write(tmp_path / "b.parquet", x=[1.0])
    with pytest.raises(DataError) as info:
        inspect_schema(source(tmp_path, features=["x", "y"]), [str(a), str(b)])
    message = str(info.value)
    assert "'y'" in message and str(b) in message and "missing" in message


@pytest.mark.parametrize("values, kind", [(["a", "b"], "string"), ([True, False], "bool")])
def test_inspect_refuses_non_numeric_features(tmp_path, values, kind):
    path = write(tmp_path / "a.parquet", x=[1.0, 2.0], s=values)
    with pytest.raises(DataError) as info:
        inspect_schema(source(tmp_path, features=["x", "s"]), [str(path)])
    message = str(info.value)
    assert "'s'" in message and str(path) in message and kind in message
    assert "not numeric" in message


def test_inspect_refuses_a_partition_with_an_incompatible_schema(tmp_path):
    a = write(tmp_path / "a.parquet", x=[1.0, 2.0])
    b = write(tmp_path / "b.parquet", x=["1.0", "2.0"])
    with pytest.raises(DataError) as info:
        inspect_schema(source(tmp_path, features=["x"]), [str(a), str(b)])
    assert "'x'" in str(info.value) and str(b) in str(info.value)


def test_inspect_accepts_numeric_types_that_differ_between_partitions(tmp_path):
    a = write(tmp_path / "a.parquet", x=np.array([1, 2], np.int32))
    b = write(tmp_path / "b.parquet", x=np.array([1.5], np.float64))
    assert inspect_schema(source(tmp_path, features=["x"]), [str(a), str(b)]) == (["x"], [2, 1])


def test_inspect_takes_all_numeric_columns_when_features_are_omitted(tmp_path):
    path = write(tmp_path / "a.parquet", id=[1, 2], a=[1.0, 2.0], s=["u", "v"], b=[3, 4],
                 flag=[True, False], c=np.array([1, 2], np.uint16))
    features, _ = inspect_schema(source(tmp_path, passthrough=["id"]), [str(path)])
    assert features == ["a", "b", "c"]


def test_inspect_without_numeric_columns(tmp_path):
    path = write(tmp_path / "a.parquet", id=[1, 2], s=["u", "v"])
    with pytest.raises(DataError, match="no numeric columns") as info:
        inspect_schema(source(tmp_path, passthrough=["id"]), [str(path)])
    assert str(path) in str(info.value)


def test_inspect_passthrough_missing(tmp_path):
    a = write(tmp_path / "a.parquet", id=[1], x=[1.0])
    b = write(tmp_path / "b.parquet", x=[1.0])
    with pytest.raises(DataError) as info:
        inspect_schema(source(tmp_path, features=["x"], passthrough=["id"]), [str(a), str(b)])
    message = str(info.value)
    assert "source.passthrough" in message and "'id'" in message and str(b) in message


# ------------------------------------------------------------------ load


def test_load_one_chunk_per_file(tmp_path):
    X = blob_partitions(tmp_path, sizes=(5, 0, 7, 3))
    dataset = load(source(tmp_path, features=["x0", "x1"], passthrough=["id"]))
    assert dataset.files == [str(tmp_path / f"part.{i}.parquet") for i in range(4)]
    assert dataset.X.chunks == ((5, 0, 7, 3), (2,))
    assert dataset.rows == dataset.valid_rows == [5, 0, 7, 3]
    assert dataset.n_rows == 15 and dataset.rows_dropped == 0
    assert dataset.features == ["x0", "x1"] and dataset.passthrough == ["id"]
    np.testing.assert_array_equal(dataset.X.compute(), X)


def test_load_in_float32(tmp_path):
    X = blob_partitions(tmp_path, sizes=(5, 7))
    dataset = load(source(tmp_path, features=["x0", "x1"]), dtype="float32")
    assert dataset.X.dtype == np.float32
    result = dataset.X.compute()
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, X.astype(np.float32))


def test_load_integer_and_decimal_features(tmp_path):
    big = 2**53 + 1  # not exactly a float64: loaded as the nearest one, not refused
    write(tmp_path / "a.parquet", i=np.array([1, big], np.int64),
          d=pa.array([decimal.Decimal("1.25"), decimal.Decimal("-2.50")]))
    dataset = load(source(tmp_path, features=["i", "d"]))
    np.testing.assert_array_equal(dataset.X.compute(), [[1.0, 1.25], [float(big), -2.5]])


@pytest.mark.parametrize("bad, what", [(np.nan, "NaN"), (None, "null"), (np.inf, "infinite"),
                                       (-np.inf, "infinite")])
def test_load_non_finite_values_fail_naming_file_and_column(tmp_path, bad, what):
    write(tmp_path / "part.0.parquet", x0=[1.0, 2.0], x1=[1.0, 2.0])
    bad_file = write(tmp_path / "part.1.parquet", x0=[1.0, 2.0, 3.0], x1=[1.0, bad, 3.0])
    with pytest.raises(DataError) as info:
        load(source(tmp_path, features=["x0", "x1"]))
    message = str(info.value)
    assert str(bad_file) in message and "'x1'" in message and what in message
    assert "nan_policy: drop" in message


def test_load_drop_excludes_non_finite_rows(tmp_path):
    write(tmp_path / "part.0.parquet", x0=[1.0, np.nan, 3.0, 4.0], x1=[1.0, 2.0, np.inf, 4.0])
    write(tmp_path / "part.1.parquet", x0=[5.0, 6.0], x1=[None, 6.0])
    write(tmp_path / "part.2.parquet", x0=[7.0, 8.0], x1=[7.0, 8.0])
    dataset = load(source(tmp_path, features=["x0", "x1"], nan_policy="drop"))
    assert dataset.rows == [4, 2, 2]
    assert dataset.valid_rows == [2, 1, 2]
    assert dataset.rows_dropped == 3 and dataset.n_rows == 8
    assert dataset.X.chunks[0] == (2, 1, 2)
    np.testing.assert_array_equal(dataset.X.compute(),
                                  [[1, 1], [4, 4], [6, 6], [7, 7], [8, 8]])


@pytest.mark.parametrize("n_rows", [1, 6, 7, 8, 20, 21])
def test_column_extremes_are_numpy_s_min_and_max(n_rows):
    """Folded in blocks of 7 rows (a short last block or none), on a strided view too."""
    from pipeline.source import column_extremes

    rng = np.random.default_rng(n_rows)
    wide = rng.normal(size=(n_rows, 4)) * 10.0 ** rng.integers(-3, 3, size=(n_rows, 4))
    for X in (np.ascontiguousarray(wide[:, :3]), wide[:, :3]):
        lowest, highest = column_extremes(X, block_rows=7)
        np.testing.assert_array_equal(lowest, X.min(axis=0))
        np.testing.assert_array_equal(highest, X.max(axis=0))
    lowest, highest = column_extremes(np.empty((0, 2)))
    assert list(lowest) == [np.inf, np.inf] and list(highest) == [-np.inf, -np.inf]


def _describe_pass(dataset):
    from pipeline.mixture import _kernels

    return [_kernels.describe_chunk(block.compute())
            for block in dataset.X.to_delayed().ravel()]


@pytest.mark.parametrize("nan_policy", ["error", "drop"])
def test_load_describes_each_block_as_the_fit_s_describe_pass_would(tmp_path, nan_policy):
    """The load scans each file as it reads it: its description of every block of X is
    the describe pass's, bit for bit (so a run skips that pass), with an empty file and
    with rows dropped."""
    X = blob_partitions(tmp_path, sizes=(40, 0, 60))
    if nan_policy == "drop":
        write(tmp_path / "part.3.parquet", x0=[1.0, np.nan, 3.0], x1=[1.0, 2.0, np.inf])
    dataset = load(source(tmp_path, features=["x0", "x1"], nan_policy=nan_policy))
    expected = _describe_pass(dataset)
    assert len(dataset.described) == len(expected) == len(dataset.files)
    for ours, theirs in zip(dataset.described, expected):
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            assert np.array_equal(ours[key], value), key
    assert expected[1]["n"] == 0 and np.array_equal(expected[0]["mean"], X[:40].mean(axis=0))


def test_load_describes_nothing_it_did_not_scan_as_the_fit_sees_it(tmp_path):
    """float32, standardized or weighted: X's blocks are not the scanned float64 rows (or
    the description has weights), so the fit makes its own describe pass."""
    blob_partitions(tmp_path, sizes=(40, 60))
    assert load(source(tmp_path, features=["x0", "x1"]), dtype="float32").described is None
    assert load(source(tmp_path, features=["x0", "x1"], standardize=True)).described is None
    weighted = tmp_path / "weighted"
    write(weighted / "a.parquet", x0=[1.0, 2.0, 3.0], x1=[1.0, 5.0, 2.0], w=[1.0, 2.0, 1.0])
    assert load(source(weighted, features=["x0", "x1"], weight="w")).described is None


def test_a_selection_on_the_load_s_description_is_the_same_fit_one_pass_shorter(tmp_path):
    from pipeline.selection import select

    blob_partitions(tmp_path, sizes=(300, 0, 500, 200))
    dataset = load(source(tmp_path, features=["x0", "x1"]))
    grid = dict(n_components=[1, 2, 3], covariance_types=["full", "diag"], random_state=0)
    ours = select(dataset.X, described=dataset.described, **grid)
    theirs = select(dataset.X, **grid)
    assert ours.n_passes == theirs.n_passes - 1
    assert [c.bic for c in ours.candidates] == [c.bic for c in theirs.candidates]
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.array_equal(getattr(ours.model, name), getattr(theirs.model, name)), name


def test_load_drop_of_every_row_fails_clearly(tmp_path):
    write(tmp_path / "part.0.parquet", x0=[1.0, np.nan], x1=[np.nan, 2.0])
    with pytest.raises(DataError, match="removed every row"):
        load(source(tmp_path, features=["x0", "x1"], nan_policy="drop"))


@pytest.mark.parametrize("nan_policy", ["error", "drop"])
def test_load_all_null_column_is_named(tmp_path, nan_policy):
    write(tmp_path / "part.0.parquet", x0=[1.0, 2.0], x1=pa.array([None, None], pa.float64()))
    write(tmp_path / "part.1.parquet", x0=[3.0], x1=pa.array([np.nan], pa.float64()))
    with pytest.raises(DataError, match="'x1' is null in every row"):
        load(source(tmp_path, features=["x0", "x1"], nan_policy=nan_policy))


def test_load_input_without_rows_fails(tmp_path):
    write(tmp_path / "part.0.parquet", x=pa.array([], pa.float64()))
    write(tmp_path / "part.1.parquet", x=pa.array([], pa.float64()))
    with pytest.raises(DataError, match="no rows") as info:
        load(source(tmp_path, features=["x"]))
    assert "2 file(s)" in str(info.value)


@pytest.mark.parametrize("content", [b"", b"PAR1", np.random.default_rng(0).bytes(4096)],
                         ids=["empty", "magic-only", "random"])
def test_load_corrupt_file_is_named(tmp_path, content):
    write(tmp_path / "part.0.parquet", x=[1.0, 2.0])
    corrupt = tmp_path / "part.1.parquet"
    corrupt.write_bytes(content)
    with pytest.raises(DataError, match="not a readable Parquet file") as info:
        load(source(tmp_path, features=["x"]))
    assert str(corrupt) in str(info.value)


def test_errors_tell_same_named_files_apart(tmp_path):
    write(tmp_path / "date=1" / "part.0.parquet", x=[1.0, 2.0])
    bad = write(tmp_path / "date=2" / "part.0.parquet", x=[1.0, np.nan])
    with pytest.raises(DataError) as info:
        load(source(tmp_path, features=["x"]))
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("value", [0.0, 0.1, 1e4 + 0.1])
def test_standardize_constant_column_is_named(tmp_path, value):
    write(tmp_path / "part.0.parquet", x0=[1.0, 2.0, 3.0], x1=[value] * 3)
    write(tmp_path / "part.1.parquet", x0=[4.0, 5.0], x1=[value] * 2)
    with pytest.raises(DataError, match="'x1' is constant"):
        load(source(tmp_path, features=["x0", "x1"], standardize=True))
    # without standardize too: it only makes the covariances singular
    with pytest.raises(DataError, match="'x1' is constant .* remove it from source.features"):
        load(source(tmp_path, features=["x0", "x1"]))


def test_fewer_distinct_rows_than_components_is_refused(tmp_path):
    rows = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    for i in range(2):
        part = np.repeat(rows, 10, axis=0)
        write(tmp_path / f"part.{i}.parquet", x0=part[:, 0], x1=part[:, 1])
    load(source(tmp_path, features=["x0", "x1"]), min_distinct_rows=3)
    with pytest.raises(DataError, match="only 3 distinct row.* 4 components.*n_components"):
        load(source(tmp_path, features=["x0", "x1"]), min_distinct_rows=4)


def test_standardize_gives_zero_mean_unit_variance(tmp_path):
    X = blob_partitions(tmp_path, sizes=(30, 0, 50, 20)) * [1.0, 100.0] + [5.0, -3e3]
    for i, part in enumerate((X[:30], X[30:30], X[30:80], X[80:])):
        write(tmp_path / f"part.{i}.parquet", x0=part[:, 0], x1=part[:, 1])
    dataset = load(source(tmp_path, features=["x0", "x1"], standardize=True))
    Z = dataset.X.compute()
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1, rtol=1e-12)
    np.testing.assert_allclose(dataset.scaler_mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(dataset.scaler_scale, X.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(Z, (X - X.mean(axis=0)) / X.std(axis=0), atol=1e-12)


def test_standardize_uses_only_the_kept_rows(tmp_path):
    write(tmp_path / "part.0.parquet", x=[1.0, np.nan, 3.0, 1e9], y=[1.0, 5.0, 3.0, np.inf])
    dataset = load(source(tmp_path, features=["x", "y"], standardize=True, nan_policy="drop"))
    np.testing.assert_allclose(dataset.scaler_mean, [2.0, 2.0])
    np.testing.assert_allclose(dataset.X.compute(), [[-1.0, -1.0], [1.0, 1.0]])


# ------------------------------------------------------------------ source.weight


def test_weight_column_is_read_beside_x_and_is_never_a_feature(tmp_path):
    write(tmp_path / "part.0.parquet", x0=[1.0, np.nan, 3.0], x1=[1.0, 2.0, 3.0],
          w=np.array([2, 5, 0], np.int64))
    write(tmp_path / "part.1.parquet", x0=[4.0, 5.0], x1=[4.0, 5.0], w=[0.5, 1.5])
    dataset = load(source(tmp_path, weight="w", nan_policy="drop"))  # features omitted
    assert dataset.features == ["x0", "x1"]
    assert dataset.weight.chunks == ((2, 2),) and dataset.X.chunks[0] == (2, 2)
    np.testing.assert_array_equal(dataset.X.compute(), [[1, 1], [3, 3], [4, 4], [5, 5]])
    # the row dropped for its NaN takes its weight along
    np.testing.assert_array_equal(dataset.weight.compute(), [2.0, 0.0, 0.5, 1.5])
    assert dataset.weight.dtype == np.float64
    assert load(source(tmp_path, features=["x0", "x1"], nan_policy="drop")).weight is None


def test_weight_column_with_float32_features_stays_float64(tmp_path):
    write(tmp_path / "part.0.parquet", x0=[1.0, 2.0], x1=[1.0, 3.0], w=[0.1, 0.2])
    dataset = load(source(tmp_path, weight="w"), dtype="float32")
    assert dataset.X.dtype == np.float32 and dataset.weight.dtype == np.float64
    np.testing.assert_array_equal(dataset.weight.compute(), [0.1, 0.2])


@pytest.mark.parametrize("bad, what", [(np.nan, "NaN/null"), (None, "NaN/null"),
                                       (np.inf, "infinite"), (-1.0, "negative")])
def test_bad_weights_fail_naming_file_and_column(tmp_path, bad, what):
    write(tmp_path / "part.0.parquet", x0=[1.0, 2.0], x1=[1.0, 3.0], w=[1.0, 1.0])
    bad_file = write(tmp_path / "part.1.parquet", x0=[1.0, 2.0], x1=[5.0, 2.0], w=[1.0, bad])
    with pytest.raises(DataError) as info:
        load(source(tmp_path, features=["x0", "x1"], weight="w"))
    message = str(info.value)
    assert str(bad_file) in message and "source.weight" in message and "'w'" in message
    assert what in message


def test_weights_all_zero_fail_naming_the_column(tmp_path):
    write(tmp_path / "part.0.parquet", x0=[1.0, 2.0], x1=[1.0, 3.0], w=[0, 0])
    write(tmp_path / "part.1.parquet", x0=[1.0, 2.0], x1=[5.0, 2.0], w=[0, 0])
    with pytest.raises(DataError, match="source.weight: column 'w' is 0 in every row"):
        load(source(tmp_path, features=["x0", "x1"], weight="w"))


def test_weight_column_missing_or_not_numeric_is_named_with_its_file(tmp_path):
    write(tmp_path / "part.0.parquet", x0=[1.0], w=[1.0])
    other = write(tmp_path / "part.1.parquet", x0=[1.0], w=["heavy"])
    with pytest.raises(DataError) as info:
        inspect_schema(source(tmp_path, weight="w"), list_parquet_files(str(tmp_path)))
    assert str(other) in str(info.value) and "source.weight" in str(info.value)
    assert "not numeric" in str(info.value)
    with pytest.raises(DataError, match="source.weight: column 'v' is missing"):
        inspect_schema(source(tmp_path, weight="v"), list_parquet_files(str(tmp_path)))


def test_rows_of_weight_0_are_no_distinct_rows_for_the_components(tmp_path):
    write(tmp_path / "part.0.parquet", x0=[1.0, 2.0, 3.0], x1=[1.0, 2.0, 3.0], w=[1, 1, 0])
    with pytest.raises(DataError, match="only 2 distinct"):
        load(source(tmp_path, features=["x0", "x1"], weight="w"), min_distinct_rows=3)


# ------------------------------------------------------------------ Arrow <-> numpy


def test_arrow_columns_become_numpy_from_their_buffers():
    chunks = pa.chunked_array([pa.array([1, None, 3], pa.int64()), pa.array([4, 5], pa.int64())])
    np.testing.assert_array_equal(float64_values(chunks), [1.0, np.nan, 3.0, 4.0, 5.0])
    sliced = pa.array(np.arange(10.0)).slice(3, 4)  # an offset into the buffer
    np.testing.assert_array_equal(float64_values(pa.chunked_array([sliced])), [3, 4, 5, 6])
    labels = primitive_values(pa.chunked_array([pa.array([2, 0, 1], pa.int32()).slice(1)]))
    assert labels.dtype == np.int32 and labels.tolist() == [0, 1]
    np.testing.assert_array_equal(float64_values(pa.chunked_array([pa.array([True, False])])),
                                  [1.0, 0.0])
    with pytest.raises(TypeError, match="not bool"):
        primitive_values(pa.chunked_array([pa.array([True])]))
    with pytest.raises(ValueError, match="without nulls"):
        primitive_values(chunks)
    values, mask = np.array([0.5, 1.5, 2.5]), np.array([False, True, False])
    for arrow_type, data in ((pa.float64(), values), (pa.int32(), np.array([7, 8, 9])),
                             (pa.bool_(), values > 1)):
        for m in (None, mask):
            made = numpy_to_arrow(data, arrow_type, m)
            made.validate(full=True)
            assert made.equals(pa.array(data, type=arrow_type, mask=m))
