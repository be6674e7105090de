"""Checks on values that the schema alone can judge (ranges, fixed choices, cross-references
between keys).

Names that a registry owns (task types, backbones, weighting methods and their arguments,
trackers, devices, the metrics `training.monitor` may name) are checked by that registry, through
`polyhead.engine.checks.check_config`: this package imports none of them.

Each failure is one `ConfigError` line: the key, the bad value, what is accepted.
"""

from __future__ import annotations

from polyhead.config.schema import Config
from polyhead.errors import ConfigError, bad_value
from polyhead.errors import one_of as _one_of


def _fail(key: str, value, accepted: str) -> None:
    raise bad_value(key, value, accepted)


def _positive(key: str, value, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        _fail(key, value, "a number >= 0" if allow_zero else "a number > 0")


def validate_tasks(cfg: Config) -> None:
    if not cfg.tasks:
        raise ConfigError("no tasks defined: add a 'tasks:' mapping, e.g. tasks: {category: {type: multiclass}}")
    for name, task in cfg.tasks.items():
        prefix = f"tasks.{name}"
        if task.classes is not None:
            if len(task.classes) == 0:
                _fail(f"{prefix}.classes", task.classes, "a non-empty list")
            if len(set(map(str, task.classes))) != len(task.classes):
                _fail(f"{prefix}.classes", task.classes, "a list without duplicates")
            if task.type == "binary" and len(task.classes) != 2:
                _fail(f"{prefix}.classes", task.classes, "exactly two classes [negative, positive] for a binary task")
        if task.class_weights is not None:
            if task.type != "multiclass":
                raise ConfigError(f"config key '{prefix}.class_weights' only applies to multiclass tasks (this one is {task.type})")
            if any(w < 0 for w in task.class_weights):
                _fail(f"{prefix}.class_weights", task.class_weights, "non-negative weights")
            if task.classes is not None and len(task.class_weights) != len(task.classes):
                _fail(f"{prefix}.class_weights", task.class_weights, f"{len(task.classes)} weights, one per class")
        if not 0.0 <= task.label_smoothing < 1.0:
            _fail(f"{prefix}.label_smoothing", task.label_smoothing, "a number in [0, 1)")
        if task.top_k < 1:
            _fail(f"{prefix}.top_k", task.top_k, "an integer >= 1")
        if not 0.0 < task.threshold < 1.0:
            _fail(f"{prefix}.threshold", task.threshold, "a number in (0, 1)")
        for label, thr in (task.thresholds or {}).items():
            if task.type != "multilabel":
                raise ConfigError(f"config key '{prefix}.thresholds' only applies to multilabel tasks (this one is {task.type})")
            if not 0.0 < thr < 1.0:
                _fail(f"{prefix}.thresholds.{label}", thr, "a number in (0, 1)")
        _positive(f"{prefix}.pos_weight", task.pos_weight)
        _positive(f"{prefix}.weight", task.weight, allow_zero=True)
        if task.type == "multilabel" and not task.delimiter:
            _fail(f"{prefix}.delimiter", task.delimiter, "a non-empty separator such as '|'")
        if task.table is not None and not str(task.table).strip():
            _fail(f"{prefix}.table", task.table, "a table path or image folder (or leave it unset to use data.train_table)")


SAMPLING_MODES = ("proportional", "round_robin", "temperature")
CACHE_MODES = ("auto", "memory", "disk", "off")  # polyhead.data.cache.MODES (config/ imports no data module)


def validate_sources(cfg: Config) -> None:
    """Every task needs a table: its own `tasks.<name>.table` or the shared `data.train_table`."""
    d = cfg.data
    if d.train_table:
        return
    shared = [name for name, task in cfg.tasks.items() if not task.table]
    if shared:
        raise ConfigError(
            f"config key 'data.train_table' is required but not set: task(s) {', '.join(shared)} have no "
            f"'tasks.<name>.table' of their own; set data.train_table, or a table for every task")
    for key in ("val_table", "test_table"):
        if getattr(d, key):
            raise ConfigError(f"config key 'data.{key}' is set but data.train_table is not: val/test tables belong "
                              f"to the shared train table; give per-task tables val/test rows via data.split_column")


def validate_folds(cfg: Config) -> None:
    """data.folds: null or an integer K >= 2; data.fold: 1..K and only with data.folds. Whether K fits
    the rows (and the rarest data.stratify class) is checked once the tables are read
    (polyhead.data.splits.fold_positions)."""
    d = cfg.data
    if d.folds is not None:
        if isinstance(d.folds, bool) or not isinstance(d.folds, int) or d.folds < 2:
            _fail("data.folds", d.folds, "null (no cross-validation) or an integer >= 2 (the number of folds)")
        if d.val_table:
            raise ConfigError("config key 'data.val_table' is set with data.folds: each fold's validation rows are "
                              "drawn from the training rows; unset data.val_table (~data.val_table) or data.folds, "
                              "or add the validation table's rows to data.train_table")
    if d.fold is not None:
        if d.folds is None:
            raise ConfigError(f"config key 'data.fold' is set ({d.fold}) but data.folds is not: set data.folds "
                              f"(the number of folds) too, or unset data.fold")
        if not 1 <= d.fold <= d.folds:
            _fail("data.fold", d.fold, f"a fold from 1 to {d.folds} (data.folds), or null to train every fold")


def validate_data(cfg: Config) -> None:
    d = cfg.data
    validate_sources(cfg)
    _one_of("data.sampling", d.sampling, SAMPLING_MODES)
    if d.sampling_temperature <= 0:
        _fail("data.sampling_temperature", d.sampling_temperature, "a number > 0 (1 = proportional, large = round-robin)")
    if len(d.image_size) not in (1, 2) or any(s <= 0 for s in d.image_size):
        _fail("data.image_size", d.image_size, "[size] or [height, width] with positive integers")
    _one_of("data.channels", d.channels, (1, 3))
    if d.batch_size <= 0:
        _fail("data.batch_size", d.batch_size, "an integer > 0")
    if d.eval_batch_size is not None and d.eval_batch_size <= 0:
        _fail("data.eval_batch_size", d.eval_batch_size, "an integer > 0")
    if d.num_workers != "auto" and (isinstance(d.num_workers, bool) or not isinstance(d.num_workers, int)
                                    or d.num_workers < 0):
        _fail("data.num_workers", d.num_workers, "auto or an integer >= 0")
    _one_of("data.cache", d.cache, CACHE_MODES)
    for key in ("val_fraction", "test_fraction"):
        value = getattr(d, key)
        if not 0.0 <= value < 1.0:
            _fail(f"data.{key}", value, "a fraction in [0, 1)")
    if d.val_fraction + d.test_fraction >= 1.0:
        _fail("data.val_fraction", d.val_fraction, "val_fraction + test_fraction < 1")
    if d.stratify is not None and d.stratify not in cfg.tasks:
        _one_of("data.stratify", d.stratify, list(cfg.tasks))
    validate_folds(cfg)
    for key in ("mean", "std"):
        value = getattr(d, key)
        if value is not None and len(value) != d.channels:
            _fail(f"data.{key}", value, f"{d.channels} numbers (one per channel, data.channels={d.channels})")
    if d.std is not None and any(s <= 0 for s in d.std):
        _fail("data.std", d.std, "positive numbers")
    _one_of("data.validate", d.validate, ("off", "header", "full"))
    _one_of("data.on_bad_image", d.on_bad_image, ("error", "skip"))
    a = d.augment
    _positive("data.augment.crop_padding", a.crop_padding, allow_zero=True)
    _positive("data.augment.rotation", a.rotation, allow_zero=True)
    _positive("data.augment.color_jitter", a.color_jitter, allow_zero=True)


def validate_model(cfg: Config) -> None:
    m = cfg.model
    _one_of("model.weights_key_map", m.weights_key_map, ("auto", "none", "ordered"))
    if m.branch_groups and not m.branch_point:
        raise ConfigError("model.branch_groups is set but model.branch_point is not; name the stage to branch at")
    _one_of("model.small_cnn.head_pool", m.small_cnn.head_pool, ("avg", "max", "avgmax", "flatten"))
    _positive("model.small_cnn.head_grid", m.small_cnn.head_grid)
    if not 0.0 <= m.drop_rate < 1.0:
        _fail("model.drop_rate", m.drop_rate, "a number in [0, 1)")
    if not 0.0 <= m.head.dropout < 1.0:
        _fail("model.head.dropout", m.head.dropout, "a number in [0, 1)")
    if any(h <= 0 for h in m.head.hidden):
        _fail("model.head.hidden", m.head.hidden, "positive layer widths, or [] for a linear head")


def validate_training(cfg: Config) -> None:
    o, s, t = cfg.optimizer, cfg.scheduler, cfg.training
    _one_of("optimizer.name", o.name, ("adamw", "sgd"))
    _positive("optimizer.lr", o.lr)
    _positive("optimizer.backbone_lr", o.backbone_lr, allow_zero=True)
    _positive("optimizer.weight_decay", o.weight_decay, allow_zero=True)
    if o.layer_decay is not None and not 0.0 < o.layer_decay <= 1.0:
        _fail("optimizer.layer_decay", o.layer_decay, "null (off) or a number in (0, 1]")
    _one_of("scheduler.name", s.name, ("cosine", "onecycle", "plateau", "none"))
    _positive("scheduler.warmup_epochs", s.warmup_epochs, allow_zero=True)
    if not 0.0 < s.pct_start < 1.0:
        _fail("scheduler.pct_start", s.pct_start, "a number in (0, 1)")
    if not s.div_factor >= 1.0:
        _fail("scheduler.div_factor", s.div_factor, "a number >= 1")
    if not s.final_div_factor >= 1.0:
        _fail("scheduler.final_div_factor", s.final_div_factor, "a number >= 1")
    if not 0.0 < s.factor < 1.0:
        _fail("scheduler.factor", s.factor, "a number in (0, 1)")
    if t.epochs <= 0:
        _fail("training.epochs", t.epochs, "an integer > 0")
    _one_of("training.monitor_mode", t.monitor_mode, ("auto", "min", "max"))
    _one_of("training.precision", str(t.precision), ("auto", "32", "16-mixed", "bf16-mixed"))
    _positive("training.freeze_backbone_epochs", t.freeze_backbone_epochs, allow_zero=True)
    if t.unfreeze_stages is not None and t.unfreeze_stages < 0:
        _fail("training.unfreeze_stages", t.unfreeze_stages, "null (all stages) or an integer >= 0")
    _positive("training.gradient_clip", t.gradient_clip)
    _positive("training.early_stopping.patience", t.early_stopping.patience)
    _positive("training.limit_train_batches", t.limit_train_batches)
    _positive("training.limit_val_batches", t.limit_val_batches)
    _one_of("training.on_nonfinite_loss", t.on_nonfinite_loss, ("error", "skip"))


def validate_tracking(cfg: Config) -> None:
    """Tracker names are the tracking registry's to check."""
    if len(set(cfg.tracking.trackers)) != len(cfg.tracking.trackers):
        _fail("tracking.trackers", cfg.tracking.trackers, "a list without duplicates")
    if not cfg.tracking.experiment.strip():
        _fail("tracking.experiment", cfg.tracking.experiment, "a non-empty name")


def validate_report(cfg: Config) -> None:
    if cfg.report.worst_examples < 0:
        _fail("report.worst_examples", cfg.report.worst_examples, "an integer >= 0")
    if cfg.report.max_classes_annotated < 0:
        _fail("report.max_classes_annotated", cfg.report.max_classes_annotated, "an integer >= 0")


TUNE_TYPES = ("float", "int", "categorical")


def _tune_param(key: str, p) -> None:
    """One entry of tune.space: its type's fields set, bounds in order (which config key it names is
    checked by polyhead.sweeps.space, against the config it tunes)."""
    prefix = f"tune.space.{key}"
    _one_of(f"{prefix}.type", p.type, TUNE_TYPES)
    if p.type == "categorical":
        if not p.choices:
            _fail(f"{prefix}.choices", p.choices, "a non-empty list of values")
        if any(isinstance(c, (list, dict)) for c in p.choices):
            _fail(f"{prefix}.choices", p.choices, "single values (strings, numbers, booleans, null), not lists")
        for name in ("low", "high", "step"):
            if getattr(p, name) is not None:
                raise ConfigError(f"config key '{prefix}.{name}' does not apply to a categorical entry (give choices)")
        return
    if p.choices is not None:
        raise ConfigError(f"config key '{prefix}.choices' only applies to type categorical (this one is {p.type})")
    for name in ("low", "high"):
        value = getattr(p, name)
        if value is None:
            raise ConfigError(f"config key '{prefix}.{name}' is required for type {p.type}")
        if p.type == "int" and value != int(value):
            _fail(f"{prefix}.{name}", value, "an integer (type int)")
    if not p.low <= p.high:
        _fail(f"{prefix}.high", p.high, f"a number >= low ({p.low})")
    if p.log and p.low <= 0:
        _fail(f"{prefix}.low", p.low, "a number > 0 with log: true")
    if p.step is not None:
        if p.log:
            raise ConfigError(f"config key '{prefix}.step' does not go with log: true (one or the other)")
        if p.step <= 0 or (p.type == "int" and p.step != int(p.step)):
            _fail(f"{prefix}.step", p.step, "an integer > 0" if p.type == "int" else "a number > 0")


def validate_tune(cfg: Config) -> None:
    t = cfg.tune
    for key, p in t.space.items():
        _tune_param(key, p)
    if t.trials < 1:
        _fail("tune.trials", t.trials, "an integer >= 1")
    _one_of("tune.direction", t.direction, ("auto", "minimize", "maximize"))
    _one_of("tune.pruner", t.pruner, ("median", "none"))
    _positive("tune.pruner_startup_trials", t.pruner_startup_trials, allow_zero=True)
    _positive("tune.pruner_warmup_epochs", t.pruner_warmup_epochs, allow_zero=True)
    if t.study_name is not None and not t.study_name.strip():
        _fail("tune.study_name", t.study_name, "a non-empty name (or null: the config file's name)")


def validate(cfg: Config) -> None:
    """The schema-level checks; the registries' checks follow in `polyhead.engine.checks`."""
    validate_tasks(cfg)
    validate_data(cfg)
    validate_model(cfg)
    validate_training(cfg)
    validate_tracking(cfg)
    validate_report(cfg)
    validate_tune(cfg)
