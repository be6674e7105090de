"""The typed config schema. Every key a user may write is a field here.

OmegaConf turns these dataclasses into a structured config, so an unknown key
or a value of the wrong type is refused at load time. Field comments are the
documentation shown by `polyhead config --help-keys` and in docs/config.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


@dataclass
class TaskConfig:
    type: str = MISSING  # multiclass | binary | multilabel (the task types of polyhead.tasks)
    column: Optional[str] = None  # label column in the table; defaults to the task name
    table: Optional[str] = None  # this task's own label table or image folder (rows label only this task); default: data.train_table
    classes: Optional[List[str]] = None  # class list; inferred from the training table when absent
    # multiclass
    class_weights: Optional[List[float]] = None  # one weight per class for the cross-entropy
    label_smoothing: float = 0.0  # cross-entropy label smoothing in [0, 1)
    top_k: int = 3  # how many ranked labels `predict` writes and top-k accuracy uses
    # binary
    positive: Optional[str] = None  # the label that counts as positive, even when `classes` lists it first (default: 1/true/yes or the 2nd class)
    pos_weight: Optional[float] = None  # BCE weight of positive examples (binary and multilabel)
    threshold: float = 0.5  # decision threshold: probability >= threshold is positive (binary; default for every multilabel label)
    # multilabel
    thresholds: Optional[Dict[str, float]] = None  # per-label thresholds, overriding `threshold`
    delimiter: str = "|"  # separator in string cells such as "red|blue"
    # loss
    loss: str = "cross_entropy"  # cross_entropy (softmax CE / sigmoid BCE) | focal (binary, multiclass, multilabel) | asymmetric (binary, multilabel) | a name registered with @register_loss
    loss_args: Dict[str, Any] = field(default_factory=dict)  # the loss's arguments: focal {gamma: 2, alpha}; asymmetric {gamma_pos: 0, gamma_neg: 4, clip: 0.05}
    # weighting
    weight: float = 1.0  # loss weight used by the `static` weighting method


@dataclass
class AugmentConfig:
    hflip: bool = False  # random horizontal flip
    crop_padding: int = 0  # pad then random-crop back to size (pixels); 0 = off
    random_resized_crop: bool = False  # random scale/aspect crop (ImageNet style)
    rotation: float = 0.0  # max random rotation in degrees
    color_jitter: float = 0.0  # brightness/contrast/saturation strength; 0 = off


@dataclass
class DataConfig:
    train_table: Optional[str] = None  # CSV/Parquet/JSONL table, or an image folder tree root/<class>/*.jpg; optional when every task has a `table`
    val_table: Optional[str] = None  # separate validation table (else split from train)
    test_table: Optional[str] = None  # separate test table
    root: Optional[str] = None  # image paths are relative to this folder (default: each table's folder)
    image_column: str = "image"  # the column holding image paths
    split_column: Optional[str] = None  # column with train/val/test per row
    val_fraction: float = 0.1  # seeded random split when no split column / val table
    test_fraction: float = 0.0  # seeded random test split when no split column / test table
    stratify: Optional[str] = None  # task name to stratify the random split (and data.folds) on
    folds: Any = None  # k-fold cross-validation: `polyhead train` trains K models (K >= 2), each validating on one of K folds of the train and val rows; the test split stays held out; null: off
    fold: Optional[int] = None  # with data.folds: train only this fold (1..K); set in each fold's config by the k-fold run
    folder_task: str = "label"  # task name for an image-folder tree
    image_size: List[int] = field(default_factory=lambda: [224, 224])  # [H, W], or [S] / S for S x S
    channels: int = 3  # 1 (grayscale) or 3 (RGB)
    mean: Optional[List[float]] = None  # normalisation mean per channel; default: the backbone's own
    std: Optional[List[float]] = None  # normalisation std per channel; default: the backbone's own
    batch_size: int = 64  # training batch size
    eval_batch_size: Optional[int] = None  # default: 2 x batch_size
    num_workers: Any = "auto"  # DataLoader worker processes decoding images; auto: none when the images are cached, else half the CPU cores (all but one with a GPU)
    cache: str = "auto"  # decode-once image cache: auto (disk, and in RAM when it fits) | memory | disk | off (decode every epoch)
    cache_dir: Optional[str] = None  # where data.cache keeps decoded images; default: $POLYHEAD_CACHE_DIR, else ~/.cache/polyhead/images
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training-time augmentation
    sampling: str = "proportional"  # how training draws from several tables (train_table, tasks.<name>.table): proportional | round_robin | temperature
    sampling_temperature: float = 2.0  # `temperature` sampling: table s is drawn with probability ~ rows_s^(1/T)
    validate: str = "header"  # check every table row and image before training: off | header (open each file's header, fast) | full (decode every image)
    on_bad_image: str = "error"  # a missing, unreadable or oversized image: error (stop, list them all) | skip (train without those rows, listed in skipped_rows.csv)


@dataclass
class SmallCNNConfig:
    blocks: int = 3  # conv blocks, each halving the resolution
    channels: List[int] = field(default_factory=lambda: [32, 64, 128])  # width per block (a short list doubles)
    convs_per_block: int = 1  # 3x3 conv + BN + ReLU layers per block
    batch_norm: bool = True  # BatchNorm after each conv
    pooling: str = "max"  # downsampling between blocks: max | avg
    dropout: float = 0.0  # dropout on the pooled features
    head_pool: str = "avg"  # last map -> features: avg | max | avgmax (global pools) | flatten (keeps a head_grid x head_grid map: where things are)
    head_grid: int = 4  # flatten: the map is average-pooled to head_grid x head_grid, giving channels[-1] x head_grid^2 features


@dataclass
class HeadConfig:
    hidden: List[int] = field(default_factory=list)  # [] = linear head; [256] = one hidden layer
    dropout: float = 0.0  # dropout before each head layer


@dataclass
class ModelConfig:
    backbone: str = "small_cnn"  # small_cnn, any timm model name, or a backbone registered by a plugin
    backbone_args: Dict[str, Any] = field(default_factory=dict)  # keyword arguments of a plugin's backbone (model.backbone_args.<arg>=value, no "+" needed)
    pretrained: bool = False  # ImageNet weights (offline package or timm hub)
    weights: Optional[str] = None  # local state dict / safetensors for the backbone
    weights_key_map: str = "auto"  # auto | none | ordered
    drop_rate: float = 0.0  # timm backbone dropout
    branch_point: Optional[str] = None  # share the backbone up to this stage (e.g. layer3, blocks.4), then branch
    branch_groups: Optional[Dict[str, List[str]]] = None  # branch name -> tasks; default: one branch per task
    small_cnn: SmallCNNConfig = field(default_factory=SmallCNNConfig)  # used when backbone is small_cnn
    head: HeadConfig = field(default_factory=HeadConfig)  # the same head shape for every task


@dataclass
class OptimizerConfig:
    name: str = "adamw"  # adamw | sgd
    lr: float = 1e-3  # learning rate (heads, and the backbone unless backbone_lr is set)
    weight_decay: float = 0.01  # decoupled (AdamW) or L2 (SGD) weight decay
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    backbone_lr: Optional[float] = None  # separate learning rate for the backbone (fine-tuning); with layer_decay: the top stage's
    layer_decay: Optional[float] = None  # per-stage learning-rate decay in (0, 1]: the top backbone stage gets backbone_lr (default lr*d), each stage below d times its upper neighbour's; null or 1: off


@dataclass
class SchedulerConfig:
    name: str = "onecycle"  # onecycle | cosine | plateau | none
    warmup_epochs: int = 0  # linear warm-up (cosine)
    min_lr: float = 0.0  # floor of the learning rate (cosine, plateau)
    pct_start: float = 0.3  # onecycle: share of the steps spent rising from lr/div_factor to lr (cosine-shaped), in (0, 1)
    div_factor: float = 25.0  # onecycle: the first step's learning rate is lr / div_factor
    final_div_factor: float = 10000.0  # onecycle: the last step's learning rate is lr / (div_factor * final_div_factor)
    patience: int = 2  # plateau
    factor: float = 0.5  # plateau


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False  # stop when training.monitor stops improving
    patience: int = 5  # epochs without improvement before stopping
    min_delta: float = 0.0  # smallest change that counts as an improvement


@dataclass
class TrainingConfig:
    epochs: int = 10  # maximum number of epochs
    seed: int = 42  # seeds weights, data order, augmentation and the random split
    weighting: str = "equal"  # loss-combination method, see `polyhead methods`
    weighting_args: Dict[str, Any] = field(default_factory=dict)  # options of the weighting method (`polyhead methods` lists them); set as training.weighting_args.<arg>=value, no "+" needed
    monitor: str = "val/loss"  # metric for best checkpoint and early stopping: val/loss, train/loss, {val,train}/<task>/loss, val/<task>/<metric>, train/<task>/<main metric>
    monitor_mode: str = "auto"  # min | max | auto (min for losses, max otherwise)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)  # see below
    freeze_backbone_epochs: int = 0  # train heads only for N epochs, then unfreeze
    unfreeze_stages: Optional[int] = None  # after freeze_backbone_epochs, train only the backbone's last N stages (null: all; 0: the backbone stays frozen); `polyhead train` prints the stages
    gradient_clip: Optional[float] = None  # clip the gradient norm to this value
    precision: str = "auto"  # auto | 32 | 16-mixed | bf16-mixed
    accelerator: str = "auto"  # auto | cpu | cuda (gpu is the same) | mps
    devices: Any = "auto"  # auto or 1 (one device); N: N processes on this machine (GPUs, or CPU processes with accelerator=cpu), data-parallel; [0, 2]: those GPUs
    num_nodes: int = 1  # machines, each running `devices` processes, started by torchrun or srun (docs/scaling.md)
    strategy: str = "auto"  # auto | ddp: several processes each hold the model and average gradients (data.batch_size is per process)
    deterministic: bool = False  # deterministic kernels (slower; bit-identical reruns)
    cpu_threads: Optional[int] = None  # torch threads on a CPU (default: the cores the loader workers leave, all of them with a cached dataset)
    channels_last: bool = True  # NHWC activations: much faster convolutions on CPUs and tensor cores
    limit_train_batches: Optional[float] = None  # for smoke runs: a fraction or a count
    limit_val_batches: Optional[float] = None  # for smoke runs: a fraction or a count
    progress_bar: bool = True  # live progress bars on a terminal; false, or stdout not a terminal: one plain line per epoch
    on_nonfinite_loss: str = "error"  # a NaN or infinite task loss: error (stop, naming task, step and rows) | skip (drop that batch's update)


@dataclass
class MlflowConfig:
    uri: Optional[str] = None  # tracking URI (a server http://..., or sqlite:///path.db); default: sqlite:///<output_dir>/mlflow.db
    log_model: bool = True  # upload the model bundle as a run artifact


@dataclass
class ClearMLConfig:
    offline: bool = False  # record the run in a local offline session (no server), importable later


@dataclass
class TrackingConfig:
    enabled: bool = True  # master switch: false logs nothing to any tracker (history.csv is still written)
    trackers: List[str] = field(default_factory=lambda: ["mlflow", "tensorboard", "csv"])  # any of: mlflow, tensorboard, csv, clearml
    experiment: str = "polyhead"  # experiment (MLflow) or project (ClearML) name
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)  # MLflow options
    clearml: ClearMLConfig = field(default_factory=ClearMLConfig)  # ClearML options


@dataclass
class ReportConfig:
    enabled: bool = True  # plots and report.html after train and evaluate
    worst_examples: int = 16  # images per task in the worst-classified grid
    max_classes_annotated: int = 12  # confusion matrices with more classes are not annotated cell by cell


@dataclass
class TuneParamConfig:
    type: str = MISSING  # float | int | categorical
    low: Optional[float] = None  # float, int: the smallest value
    high: Optional[float] = None  # float, int: the largest value (included)
    log: bool = False  # float, int: sample on a log scale (low > 0)
    step: Optional[float] = None  # float, int: sample a grid low, low+step, ... (int: default 1); not with log
    choices: Optional[List[Any]] = None  # categorical: the values (strings, numbers, booleans, null); a preset group (model, optimizer, scheduler) takes preset names


@dataclass
class TuneConfig:
    space: Dict[str, TuneParamConfig] = field(default_factory=dict)  # `polyhead tune`: config key -> its range, e.g. optimizer.lr: {type: float, low: 1e-4, high: 1e-2, log: true}
    trials: int = 20  # trials in the study, those an earlier `polyhead tune` of the same study finished included (--trials overrides)
    metric: Optional[str] = None  # what the study optimises: its best epoch value; default training.monitor (the trials monitor it)
    direction: str = "auto"  # minimize | maximize | auto (training.monitor_mode when set, else minimize a loss, maximize the rest)
    storage: Optional[str] = None  # Optuna storage URL; default sqlite:///<output_dir>/tune.db (a killed study resumes from it)
    study_name: Optional[str] = None  # default: the config file's name; trials go to <output_dir>/<study_name>/
    pruner: str = "median"  # median (stop a trial whose epoch value is worse than the median of earlier trials at that epoch) | none
    pruner_startup_trials: int = 5  # median: trials that always finish before any is pruned
    pruner_warmup_epochs: int = 1  # median: epochs a trial always trains before it may be pruned
    seed: Optional[int] = None  # sampler (TPE) seed; default training.seed, offset by the trials already in the study


@dataclass
class Config:
    tasks: Dict[str, TaskConfig] = field(default_factory=dict)  # task name -> task settings
    data: DataConfig = field(default_factory=DataConfig)  # tables, splits, images, loading
    model: ModelConfig = field(default_factory=ModelConfig)  # backbone and heads
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)  # preset group: optimizer=sgd
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)  # preset group: scheduler=plateau
    training: TrainingConfig = field(default_factory=TrainingConfig)  # loop, weighting, checkpoints
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # experiment trackers (MLflow by default)
    report: ReportConfig = field(default_factory=ReportConfig)  # plots and the HTML report
    tune: TuneConfig = field(default_factory=TuneConfig)  # `polyhead tune`: the search space and the Optuna study (ignored by train)
    output_dir: str = "runs"  # run folders are created under this
    run_name: Optional[str] = None  # default: <config name>-<timestamp>
    plugins: List[str] = field(default_factory=list)  # Python modules (my_pkg.my_module) or files (./my_plugin.py, relative to the config file) imported before anything is built; see docs/extending.md
