"""Run configuration: YAML validated by pydantic, ``--set a.b=c`` overrides, a stable hash.

Every error names the key's path (``model.covariance_typ: unknown key``). Credentials
never live in a config file: storage options that look like secrets are refused, and
s3fs / boto read them from the environment or the standard AWS files.
"""

import copy
import difflib
import hashlib
import json
import os
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from croniter import CroniterError, croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.mixture._covariance import COVARIANCE_TYPES
from pipeline.mixture._init import INIT_METHODS

SECRET_WORDS = ("secret", "password", "token", "key", "credential")
# Column names the assignments output writes itself; a passthrough column must not shadow them.
OUTPUT_COLUMNS = re.compile(r"cluster|log_density|outlier|prob_\d+")


class ConfigError(ValueError):
    """A config file or an override is invalid; the message names the key's path."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _secret_names(options, prefix=""):
    """Dotted names of the options that look like credentials, nested ones included
    (s3fs passes ``client_kwargs`` / ``config_kwargs`` on to botocore)."""
    found = []
    for name, value in (options or {}).items():
        lowered = str(name).lower()
        if any(word in lowered for word in SECRET_WORDS) and lowered != "endpoint_url":
            found.append(f"{prefix}{name}")
        elif isinstance(value, dict):
            found.extend(_secret_names(value, f"{prefix}{name}."))
    return found


def _refuse_secrets(options):
    secrets = _secret_names(options)
    if secrets:
        raise ValueError(
            f"{', '.join(map(repr, secrets))}: credentials must not be written in the "
            "config; set them in the environment (AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY) or the standard AWS files")
    return options


class Source(_Section):
    """Where the data come from and which columns are features."""

    path: str = Field(description="Parquet file, directory or glob, or a Delta table's "
                                  "folder; local or s3://")
    format: Literal["parquet", "delta"] = Field(
        "parquet", description="parquet: files and Hive folders; delta: a Delta Lake table")
    version: Annotated[int, Field(ge=0, strict=True)] | None = Field(
        None, description="the Delta table's version to read (time travel); latest if omitted")
    features: list[str] | None = Field(
        None, description="feature columns; all numeric columns but passthrough if omitted")
    passthrough: list[str] = Field(default_factory=list,
                                   description="columns carried to the output (ids, keys)")
    weight: str | None = Field(
        None, description="column of sample weights (frequency weights: finite, >= 0, not "
                          "all 0) for the fit and the criteria; never a feature")
    nan_policy: Literal["error", "drop"] = "error"
    standardize: bool = False
    partitioning: Literal["hive", "none"] | list[str] = Field(
        "hive", description="partition keys from folder names: key=value (hive), none, or "
                            "the keys of plain value folders in order")
    filter: list | None = Field(
        None, description="partitions to read, in the filters convention of pyarrow and dask: "
                          "[[key, op, value], ...] (AND), or a list of such lists (OR)")
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("storage_options")
    @classmethod
    def _no_secrets(cls, v):
        return _refuse_secrets(v)

    @field_validator("partitioning")
    @classmethod
    def _partition_keys(cls, v, info):
        if info.data.get("format") == "delta" and v != "hive":
            raise ValueError("a Delta table's partitions come from its log; leave "
                             "source.partitioning out")
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError("must be hive, none, or a non-empty list of distinct keys")
        return v

    @field_validator("filter")
    @classmethod
    def _filter_shape(cls, v):
        if v is None:
            return v
        return filter_to_dnf(v)

    @field_validator("passthrough")
    @classmethod
    def _passthrough_names(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("lists a column twice")
        clashes = [c for c in v if OUTPUT_COLUMNS.fullmatch(c)]
        if clashes:
            raise ValueError(f"{clashes[0]!r} is a column the output writes itself "
                             "(cluster, prob_<k>, log_density, outlier); leave it out of "
                             "passthrough")
        return v

    @field_validator("version")
    @classmethod
    def _version_of_a_delta_table(cls, v, info):
        if v is not None and info.data.get("format") != "delta":
            raise ValueError("only a Delta table has versions; set source.format: delta, or "
                             "leave source.version out")
        return v

    @field_validator("features")
    @classmethod
    def _features_non_empty(cls, v):
        if v is not None and not v:
            raise ValueError("must list at least one column, or be omitted for all numeric ones")
        if v is not None and len(set(v)) != len(v):
            raise ValueError("lists a column twice")
        return v


FILTER_OPS = ("=", "==", "!=", "<", "<=", ">", ">=", "in", "not in")


def filter_to_dnf(v):
    """A filter as a list of AND-groups of (key, op, value) lists, checked for shape.

    Accepts pyarrow's and dask's convention: a list of predicates (AND), or a list of
    lists of predicates (OR of ANDs)."""
    def predicate(p):
        return (isinstance(p, list | tuple) and len(p) == 3 and isinstance(p[0], str)
                and p[1] in FILTER_OPS)

    if not isinstance(v, list) or not v:
        raise ValueError("must be a list such as [[day, '>=', '2026-11-01']]")
    groups = [v] if all(predicate(p) for p in v) else v
    for group in groups:
        if not isinstance(group, list) or not group or not all(predicate(p) for p in group):
            raise ValueError(
                f"{group!r} is not a list of [key, op, value] predicates; op is one of "
                f"{', '.join(FILTER_OPS)}, e.g. [[day, '>=', '2026-11-01'], [region, in, "
                "[eu, us]]]")
        for p in group:
            if p[1] in ("in", "not in") and not isinstance(p[2], list):
                raise ValueError(f"{list(p)!r}: {p[1]!r} takes a list of values")
    return [[list(p) for p in group] for group in groups]


class ComponentRange(_Section):
    # strict, as a plain n_components is: "2" or 2.0 are refused, not coerced
    min: Annotated[int, Field(ge=1, strict=True)] = 1
    max: Annotated[int, Field(ge=1, strict=True)]
    step: Annotated[int, Field(ge=1, strict=True)] = 1

    @model_validator(mode="after")
    def _ordered(self):
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


PositiveInt = Annotated[int, Field(ge=1, strict=True)]


def _check_component_counts(v):
    def ok(n):
        return isinstance(n, int) and not isinstance(n, bool) and n >= 1

    if ok(v):
        return v
    if isinstance(v, list) and v and all(ok(n) for n in v):
        return v
    if isinstance(v, dict):
        return ComponentRange.model_validate(v)
    raise ValueError(f"must be an int >= 1, a list of them, or a range such as "
                     f"{{min: 1, max: 10}}; got {v!r}")


def _check_covariance_types(v):
    values = v if isinstance(v, list) else [v]
    bad = [c for c in values if c not in COVARIANCE_TYPES]
    if bad or not values:
        raise ValueError(f"must be one of {', '.join(COVARIANCE_TYPES)} or a list of them; "
                         f"got {v!r}")
    return v


class Model(_Section):
    """The grid of candidate mixtures and how each is fitted.

    ``kind: bayesian`` fits one variational mixture (BayesianGaussianMixture) instead of a
    BIC/AIC grid: ``n_components`` (its largest value) is an upper bound, and the report
    counts the components whose weight exceeds ``weight_threshold``.
    """

    kind: Literal["gaussian", "bayesian"] = "gaussian"
    weight_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.01
    n_components: Any = 1
    covariance_type: Any = "full"
    n_init: PositiveInt = 1
    init_params: Literal[*INIT_METHODS] = "kmeans"
    tol: Annotated[float, Field(ge=0)] = 1e-3
    max_iter: Annotated[int, Field(ge=0)] = 100
    reg_covar: Annotated[float, Field(ge=0)] = 1e-6
    random_state: Annotated[int, Field(ge=0)] | None = 0
    dtype: Literal["float64", "float32"] = "float64"
    criterion: Literal["bic", "aic"] = "bic"
    persist: Literal["auto", True, False] = "auto"
    init_from: str | None = Field(
        None, description="a saved model (folder, or a fit output) whose weights, means and "
                          "precisions start EM instead of init_params: a warm refit")

    _n_components = field_validator("n_components")(classmethod(
        lambda cls, v: _check_component_counts(v)))
    _covariance_type = field_validator("covariance_type")(classmethod(
        lambda cls, v: _check_covariance_types(v)))

    @model_validator(mode="after")
    def _one_covariance_type_for_bayesian(self):
        if self.kind == "bayesian" and len(self.covariance_types()) > 1:
            raise ValueError(
                "covariance_type: kind bayesian fits one mixture, of one covariance type "
                f"(got {self.covariance_types()}); name one, e.g. covariance_type: full")
        return self
    @field_validator("init_from")
    @classmethod
    def _one_candidate(cls, v, info):
        if v is None:
            return v
        counts = info.data.get("n_components")
        if isinstance(counts, ComponentRange):
            counts = list(range(counts.min, counts.max + 1, counts.step))
        types = info.data.get("covariance_type")
        several = (len(set(counts)) > 1 if isinstance(counts, list) else False) or (
            isinstance(types, list) and len(set(types)) > 1) or info.data.get("n_init", 1) > 1
        if several:
            raise ValueError("a warm start fits one candidate: set n_components to one number "
                             "and covariance_type to one type (the saved model's), n_init: 1")
        return v

    def component_counts(self):
        n = self.n_components
        if isinstance(n, int):
            return [n]
        if isinstance(n, ComponentRange):
            return list(range(n.min, n.max + 1, n.step))
        return sorted(set(n))  # validation refused an empty list

    def covariance_types(self):
        c = self.covariance_type
        return [c] if isinstance(c, str) else list(dict.fromkeys(c))


class Cluster(_Section):
    """An embedded LocalCluster (default) or the address of an existing scheduler."""

    address: str | None = None
    n_workers: PositiveInt = 2
    threads_per_worker: PositiveInt = 1
    processes: bool = Field(
        False, description="false: the workers are threads of the mixlake process (no "
                           "worker start-up, no copies between processes; memory_limit is "
                           "the whole process's, 'auto' none); true: one process per worker")
    memory_limit: str | int = "auto"
    local_directory: str | None = None
    connect_timeout: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _bytes(cls, v):
        """What dask's LocalCluster accepts: 'auto', a number of bytes, or '4GiB'."""
        if isinstance(v, bool) or (isinstance(v, int) and v < 0):
            raise ValueError(f"{v!r} is not a memory size; use 'auto', bytes, or e.g. '4GiB'")
        if isinstance(v, str) and v != "auto":
            from dask.utils import parse_bytes

            try:
                parse_bytes(v)
            except ValueError:
                raise ValueError(f"{v!r} is not a memory size; use 'auto', a number of "
                                 "bytes, or a size such as '4GiB' or '512MB'") from None
        return v


class Output(_Section):
    """Where results go and what happens when something is already there."""

    path: str
    mode: Literal["error", "overwrite", "skip-if-complete", "incremental"] | None = Field(
        None, description="error for `mixlake run`, incremental for `mixlake score` if omitted")
    columns: list[Literal["probabilities", "log_density", "outlier"]] = Field(
        default_factory=lambda: ["probabilities", "log_density", "outlier"])
    format: Literal["parquet", "delta"] = Field(
        "parquet", description="the assignments as Parquet files mirroring the input, or as a "
                               "Delta table with one commit per run")
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def mode_for(self, job):
        """The mode in force: the config's, or the job's default (score: incremental, so
        the same config scores only what is new every night; fit: error)."""
        return self.mode or ("incremental" if job in ("score", "update") else "error")

    @field_validator("storage_options")
    @classmethod
    def _no_secrets(cls, v):
        return _refuse_secrets(v)


_CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week", "second")


def _cron_problem(expression):
    """Why ``expression`` is not a cron expression for Prefect's ``Cron`` schedule, or None.

    Prefect validates cron with croniter (a vendored copy) and refuses croniter's random
    (R) and hashed (H) fields; so does this, and also croniter's seventh (year) field,
    which cron lacks. The message names the first field croniter refuses on its own.
    """
    fields = expression.split()
    macro = expression.strip().startswith("@")  # @daily, @hourly, ...
    if not macro and len(fields) not in (5, 6):
        return (f"has {len(fields)} field(s), expected 5: "
                "'minute hour day-of-month month day-of-week'")
    if any(text.casefold() in ("r", "h") for text in fields):
        return "croniter's random (R) and hashed (H) fields are not supported"
    try:
        croniter.expand(expression)
    except CroniterError as exc:
        reason = re.sub(r"^\[.*?\] ", "", str(exc))  # croniter echoes the expression
        for index, (name, text) in enumerate(zip(_CRON_FIELDS, [] if macro else fields)):
            alone = " ".join(text if i == index else "*" for i in range(len(fields)))
            if not croniter.is_valid(alone):
                return f"{name} field {text!r}: {reason}"
        return reason
    return None


class Schedule(_Section):
    cron: str | None = None
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron_fields(cls, v):
        problem = v is not None and _cron_problem(v)
        if problem:
            raise ValueError(f"{v!r} is not a cron expression: {problem}")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v):
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            if not zoneinfo.available_timezones():
                return v  # no time zone database here to check against; Prefect checks it
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as "
                             "'UTC' or 'Europe/Berlin'") from None
        return v


Fraction = Annotated[float, Field(gt=0, lt=1)]
_MAX_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([hdw])")
_AGE_UNITS = {"h": 1 / 24, "d": 1.0, "w": 7.0}


class Monitor(_Section):
    """What a run measures of new data against the model's training baseline, and when
    its verdict recommends a refit."""

    outlier_quantile: Fraction = Field(
        0.01, description="rows below this quantile of the training log-density are outliers")
    max_outlier_rate: Fraction = Field(0.05, description="refit above this share of outliers")
    max_psi: Annotated[float, Field(gt=0)] = Field(
        0.2, description="refit above this population stability index of the cluster "
                         "proportions")
    max_loglik_drop: Annotated[float, Field(gt=0)] = Field(
        0.5, description="refit when the mean log-density falls more than this many "
                         "training standard deviations")


class Refit(_Section):
    """When `mixlake update` refits, and how."""

    mode: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: when the verdict recommends it or max_age has passed")
    max_age: str | None = Field(None, description="refit a model older than this: 36h, 30d, 2w")
    grid: bool = Field(False, description="refit the whole model grid (cold) instead of a warm "
                                          "start from the current model")

    @field_validator("max_age")
    @classmethod
    def _age(cls, v):
        if v is not None and not _MAX_AGE.fullmatch(v.strip()):
            raise ValueError(f"{v!r} is not an age; write a number and a unit h, d or w, "
                             "e.g. 30d")
        return v

    def max_age_days(self):
        if self.max_age is None:
            return None
        number, unit = _MAX_AGE.fullmatch(self.max_age.strip()).groups()
        return float(number) * _AGE_UNITS[unit]


class Score(_Section):
    """For the score job: the model folder (``<fit output>/model``) to apply."""

    model_path: str


class Lineage(_Section):
    """Where the run's OpenLineage events go: a file (one JSON event per line) or an
    OpenLineage HTTP endpoint (Marquez, DataHub, ...)."""

    transport: Literal["file", "http"]
    path: str | None = Field(None, validate_default=True,
                             description="file transport: the file the events are appended to")
    url: str | None = Field(None, validate_default=True,
                            description="http transport: the server, e.g. http://marquez:5000")
    endpoint: str = "api/v1/lineage"
    timeout: Annotated[float, Field(gt=0)] = 5.0

    @field_validator("path")
    @classmethod
    def _path_for_file(cls, v, info):
        transport = info.data.get("transport")
        if transport == "file" and not v:
            raise ValueError("the file transport needs the path of the file to append the "
                             "events to")
        if transport == "http" and v is not None:
            raise ValueError("only for transport: file (http sends to url)")
        return v

    @field_validator("url")
    @classmethod
    def _url_for_http(cls, v, info):
        transport = info.data.get("transport")
        if transport == "file":
            if v is not None:
                raise ValueError("only for transport: http (file writes to path)")
            return v
        if transport == "http" and (not v or not re.match(r"https?://[^/]", v)):
            raise ValueError(f"the http transport needs an http(s):// URL; got {v!r}")
        if v and "@" in v.split("//", 1)[1].split("/", 1)[0]:
            raise ValueError("credentials must not be written in the config; set the API "
                             "key in the environment (OPENLINEAGE_API_KEY)")
        return v


class RunConfig(_Section):
    """A whole run: source, model grid, cluster, output and schedule."""

    name: str = "mixlake"
    source: Source
    model: Model = Model()
    cluster: Cluster = Cluster()
    output: Output
    schedule: Schedule = Schedule()
    score: Score | None = None
    lineage: Lineage | None = None
    monitor: Monitor = Monitor()
    refit: Refit = Refit()

    def config_hash(self):
        """sha256 of what determines the results (first 16 hex digits).

        The source, the model grid (component counts normalised, so ``5`` and ``[5]``
        agree) and the output's path and columns. Not the cluster, the schedule, the
        output mode, the lineage or the name: the model is bit-for-bit the same on any
        number of workers, so changing them must not invalidate a complete run or a
        checkpoint. Settings at their defaults that older configs did not have (the
        formats, the Delta version) are left out, so those configs keep their hash.
        """
        dumped = self.model_dump(mode="json")
        model = dict(dumped["model"], n_components=self.model.component_counts(),
                     covariance_type=self.model.covariance_types())
        if self.model.kind == "gaussian":  # the hash of a grid config stays as it was
            del model["kind"], model["weight_threshold"]
        if model["init_from"] is None:  # keys at their default leave older hashes as they were
            del model["init_from"]
        source = {k: v for k, v in dumped["source"].items()
                  if (k, v) not in (("format", "parquet"), ("version", None), ("weight", None))}
        output = {k: dumped["output"][k] for k in ("path", "columns")}
        if self.output.format != "parquet":
            output["format"] = self.output.format
        if self.monitor.outlier_quantile != Monitor().outlier_quantile:
            output["outlier_quantile"] = self.monitor.outlier_quantile  # the outlier column
        canonical = json.dumps({"source": source, "model": model, "output": output,
                                "score": dumped["score"]}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _section_at(loc):
    """The config class of the section at ``loc`` (a path of keys), or None."""
    section = RunConfig
    for key in loc:
        field = section.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            return None
        candidates = (field.annotation, *get_args(field.annotation))
        section = next((c for c in candidates
                        if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if section is None:
            return None
    return section


def _unknown_key_message(loc):
    section = _section_at(loc[:-1])
    close = section and difflib.get_close_matches(str(loc[-1]), list(section.model_fields), 1)
    return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"


def _format_errors(exc, origin):
    lines = []
    for error in exc.errors():
        path = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            message = _unknown_key_message(error["loc"])
        elif error["type"] == "missing":
            message = "missing required key"
        else:
            message = error["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, "):]
        lines.append(f"{path}: {message}" if path else message)
    unique = list(dict.fromkeys(lines))
    return f"{origin}: invalid config\n  " + "\n  ".join(unique)


def _set_path(raw, dotted, value):
    keys = dotted.split(".")
    node = raw
    for key in keys[:-1]:
        if not isinstance(node.get(key, {}), dict):
            raise ConfigError(f"--set {dotted}: {key} is not a section")
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def apply_overrides(raw, overrides):
    """Apply ``a.b=c`` overrides; values are parsed as YAML (``5``, ``[full, diag]``)."""
    if overrides and not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping of sections")
    # deepcopy, not a JSON round trip: YAML values such as dates must survive to validation
    raw = copy.deepcopy(raw)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key.path=value, e.g. "
                              "model.n_components=5")
        dotted, text = item.split("=", 1)
        dotted = dotted.strip()
        if not dotted or not all(dotted.split(".")):
            raise ConfigError(f"--set {item}: empty key; expected key.path=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item}: the value of {dotted} is not valid YAML "
                              f"({exc.__class__.__name__}); quote it, e.g. {dotted}='...'"
                              ) from None
        _set_path(raw, dotted, value)
    return raw


def _resolve_local(path, base):
    if "://" in path or os.path.isabs(path):
        return path
    return str((base / path).resolve())


def parse_config(raw, origin="config", base_dir=None):
    """Validate a config dict; relative local paths are resolved against ``base_dir``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of sections")
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None
    if base_dir is not None:
        base = Path(base_dir)
        config = config.model_copy(update={
            "source": config.source.model_copy(
                update={"path": _resolve_local(config.source.path, base)}),
            "output": config.output.model_copy(
                update={"path": _resolve_local(config.output.path, base)}),
            "score": config.score and config.score.model_copy(
                update={"model_path": _resolve_local(config.score.model_path, base)}),
            "model": config.model.model_copy(update={"init_from": config.model.init_from and
                                                     _resolve_local(config.model.init_from,
                                                                    base)}),
        })
        if config.lineage is not None and config.lineage.path:
            config = config.model_copy(update={"lineage": config.lineage.model_copy(
                update={"path": _resolve_local(config.lineage.path, base)})})
    overlap = set(config.source.passthrough) & set(config.source.features or ())
    if overlap:
        raise ConfigError(f"{origin}: source.passthrough: {sorted(overlap)} also listed in "
                          "source.features")
    if config.source.weight in (config.source.features or ()):
        raise ConfigError(f"{origin}: source.weight: {config.source.weight!r} is also listed "
                          "in source.features; a weight column is never a feature")
    return config


def load_config(path, overrides=()):
    """Read a YAML config (safe_load), apply overrides, validate.

    Relative paths in ``source.path`` and ``output.path`` are relative to the config
    file's folder, so a scheduled job finds its data wherever it is started from.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: the config file cannot be read ({exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    raw = apply_overrides(raw, overrides)
    return parse_config(raw, origin=str(path), base_dir=path.parent.resolve())


def dump_config(config):
    """The resolved config as YAML text (saved with every run)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
