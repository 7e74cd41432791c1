"""The config schema: one frozen dataclass per section, each field's docstring its meaning, and the
value checks that `config.validate` applies. docs/configuration.md is generated from here by
meta_dist/schema_docs.py (`python -m meta_dist.schema_docs docs/configuration.md`), and a test keeps
the two equal.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskConfig:
    name: str = "sinusoid"
    """Task family: a built-in name (sinusoid | images | omniglot | miniimagenet | cifarfs | navigation2d |
    bandits | cheetah_vel | cheetah_dir | metaworld_ml1 | metaworld_ml10 | metaworld_ml45), a plug-in's
    entry-point name, or an import path "module.path:attr" naming a `meta_dist.TaskFamily` subclass (or a function returning one)."""
    kwargs: dict = field(default_factory=dict)
    """Constructor arguments of an imported task family: `attr(**kwargs)`."""
    ways: int = 5
    """Classes per episode (N-way); ignored by regression and RL tasks."""
    shots: int = 10
    """Support examples per class (K-shot); for regression the number of support points."""
    num_query: int = 10
    """Query examples per class; for regression the number of query points."""
    data_dir: str = ""
    """Task store directory (image tasks); overridden by `--data`."""
    split: str = "vinyals"
    """Omniglot class split recorded in the store: vinyals | random | background (informational check)."""
    augment_rotations: bool = True
    """Image tasks: apply the store's 0/90/180/270 rotation classes."""
    episodes: str = "fixed"
    """Image tasks: fixed (N-way K-shot with `ways`, `shots`, `num_query`) | meta_dataset (Meta-Dataset's
    variable-way, variable-shot, class-imbalanced episodes over `sources`, Triantafillou et al. 2020; needs
    runtime.chunk_size 1)."""
    sources: dict = field(default_factory=dict)
    """Meta-Dataset episodes: the task stores to draw from, {NAME: PATH} or {NAME: {path: PATH, weight: W}}, a
    source picked per episode with probability proportional to its weight ({}: the one store of `--data`)."""
    max_ways: int = 50
    """Meta-Dataset episodes: the most ways of an episode (ways are uniform in [5, min(max_ways, classes)])."""
    within_alphabet: bool = False
    """Image tasks: draw all classes of a training episode from one alphabet (Lake et al.'s harder one-shot
    setting); the alphabet is picked uniformly among those with at least `ways` classes in the split."""
    amplitude_min: float = 0.1
    """Sinusoid amplitude range lower bound (Finn et al. 2017: 0.1)."""
    amplitude_max: float = 5.0
    """Sinusoid amplitude range upper bound (Finn et al. 2017: 5.0)."""
    phase_max: float = 3.141592653589793
    """Sinusoid phase drawn from U[0, phase_max] (MAML: pi; Reptile: 2 pi)."""
    x_min: float = -5.0
    """Sinusoid input range lower bound."""
    x_max: float = 5.0
    """Sinusoid input range upper bound."""
    env: str = "reach-v3"
    """Meta-World ML1: the environment whose goals are the tasks (any of the 50 v3 names, e.g. reach-v3,
    push-v3, pick-place-v3)."""


@dataclass(frozen=True)
class ModelConfig:
    name: str = "mlp"
    """Network: a built-in name (mlp | conv4 | conv4_strided | resnet12 | policy_mlp | policy_gru), a plug-in's
    entry-point name, or an import path "module.path:attr" naming a factory called as
    `attr(input_shape, output_dim, **kwargs) -> nn.Module` (output_dim 0: an embedding network, no head)."""
    kwargs: dict = field(default_factory=dict)
    """Keyword arguments of the model factory (for resnet12: widths, dropout)."""
    hidden_sizes: tuple = (40, 40)
    """MLP hidden layer widths."""
    activation: str = "relu"
    """MLP activation: relu | tanh."""
    channels: int = 64
    """Conv-4 filters per layer."""


@dataclass(frozen=True)
class AlgorithmConfig:
    name: str = "maml"
    """maml | fomaml | reptile | metasgd | anil | protonet | matchingnet | siamese | proto_maml (fo-Proto-MAML) |
    maml_rl | rl2, a plug-in's
    entry-point name, or an import path "module.path:attr" naming a `MetaAlgorithm` subclass."""
    inner_lr: float = 0.01
    """Inner-loop (adaptation) step size alpha."""
    inner_steps: int = 1
    """Inner-loop steps during meta-training."""
    first_order: bool = False
    """MAML: drop second-order terms (first-order MAML). `fomaml` sets it."""
    inner_optimizer: str = "sgd"
    """Inner-loop optimizer: sgd | adam (Reptile on Omniglot uses Adam with beta1 = 0)."""
    inner_batch_size: int = 0
    """Reptile: minibatch size per inner step over the task's data (0 = full batch)."""
    carry_inner_state: bool = False
    """Reptile with the adam inner optimizer: carry the inner Adam's second-moment estimates and step count
    from task to task, as the paper's code does, in `meta.state.*` entries (each step's tasks start from
    them; they become the tasks' mean). false: every task starts them afresh."""
    meta_batch_size: int = 25
    """Tasks per meta-step."""
    meta_lr: float = 0.001
    """Outer-loop step size (Adam lr, or Reptile's outer step)."""
    meta_optimizer: str = "adam"
    """Outer optimizer: adam | sgd."""
    meta_lr_schedule: str = "constant"
    """constant | linear (anneal to 0 over the run) | step (halve every `meta_lr_decay_every` steps)."""
    meta_lr_decay_every: int = 0
    """Steps between halvings for the `step` schedule."""
    head: str = ""
    """ANIL: name of the module whose parameters adapt in the inner loop ('' = the network's last
    nn.Linear, e.g. `head` of the built-in networks)."""
    distance: str = "euclidean"
    """Metric methods: euclidean (squared) | cosine."""
    metric_scale: float = 1.0
    """Metric methods: the similarities are multiplied by this before the softmax (metric scaling, Oreshkin et al.
    2018). Cosine similarities lie in [-1, 1], so at 1 (the papers' setting) the softmax over the support set stays
    nearly flat and Matching Networks learn slowly."""
    vmap: bool = True
    """Vectorize the inner loop over the tasks of a chunk with torch.func.vmap where possible."""


@dataclass(frozen=True)
class RuntimeConfig:
    backend: str = "ray"
    """ray | local (one process, no Ray; used by tests and debugging)."""
    num_workers: int = 0
    """Compute workers; 0 = one per CPU of the cluster. With `driver_worker` in effect, worker 0 is the
    driver process itself and the rest are actors."""
    driver_worker: bool = True
    """Synchronous mode, CPU workers only: the driver computes one worker's share of every step
    in-process while the actors compute theirs, on CPUs of its own: a local Ray that meta-dist starts gets
    one worker's CPUs fewer, and a Ray Tune trial computes on its own bundle. Saves a Ray round trip per
    step (measured on 2 cores: 9.4 -> 6.1 ms per sinusoid step). Off when joining a cluster as a plain
    driver (the driver's node's CPUs belong to Ray there) and in async mode."""
    compiled_graph: bool = True
    """Synchronous mode, CPU workers: reach actors on the driver's node through a Ray Compiled Graph
    each (shared-memory channels; measured round trip 0.07 ms against 0.8 ms for an ordinary actor
    call). A fault on that path falls back to ordinary calls for the step; a worker whose chunk outlives
    `chunk_timeout_s` there is restarted. A run whose steps keep waiting 0.1 s or more on the channels
    (whose reader polls a core) switches to ordinary calls."""
    threads_per_worker: int = 1
    """Intra-op threads per CPU worker (workers x threads never exceeds the cores)."""
    num_gpus_per_worker: float = 0.0
    """GPUs per worker; fractions share a GPU between actors."""
    num_gpu_workers: int = 0
    """How many of the workers are GPU workers (the rest use CPUs)."""
    chunk_size: int = 13
    """Tasks per chunk: the unit of dispatch and retry. Fixed, so results do not depend on worker count
    (13: the default meta-batch of 25 in two chunks, one per worker of a 2-core laptop)."""
    mode: str = "sync"
    """sync | async (bounded staleness, Stale Synchronous Parallel)."""
    staleness: int = 2
    """Async mode: largest accepted gap between an update's parameter version and the current one."""
    address: str = ""
    """Ray cluster address ('' = start a local single-node Ray; 'auto' or host:port to join one)."""
    chunk_timeout_s: float = 120.0
    """Re-dispatch a chunk (backup task) that has not returned after this long, counted per chunk of the
    call that carries it (a worker computes a call's chunks one after another). The last live worker is
    waited for."""
    placement_timeout_s: float = 60.0
    """Fail with a clear error if the worker actors are not all placed and answering this long after the
    start (and give up on a compiled channel that takes longer to build)."""
    stall_timeout_s: float = 600.0
    """Give up a step that has lost a worker (or backed up a chunk) once no chunk has completed for this
    long, on any worker; must exceed `chunk_timeout_s`, which a healthy chunk may take."""
    max_bad_steps: int = 5
    """Abort after this many consecutive meta-steps whose updates were all non-finite."""


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 1000
    """Checkpoint every N meta-steps (and at the end, and on SIGTERM/SIGINT)."""
    keep: int = 3
    """Keep the newest k checkpoints."""


@dataclass(frozen=True)
class EvalConfig:
    num_tasks: int = 600
    """Held-out tasks (episodes) for the final evaluation."""
    inner_steps: int = 1
    """Adaptation steps whose result is the headline `mean` of eval.json."""
    max_inner_steps: int = 10
    """Also report the curve of the metric after 0..max_inner_steps adaptation steps."""
    inner_lr: float = 0.0
    """Adaptation step size at test; 0 = the training inner_lr."""
    num_query: int = 100
    """Regression: query points per test task (images: see query_per_class)."""
    query_per_class: int = 0
    """Images: query examples per class of each test episode (0 = task.num_query); e.g. ProtoNets train
    with 1 query per class and test with 15."""
    ways: int = 0
    """N-way of the test episodes (0 = task.ways); e.g. ProtoNets train 20-way and test 5-way."""
    shots: int = 0
    """K-shot of the test episodes (0 = task.shots)."""
    transductive_bn: bool = False
    """Batch norm uses support+query statistics (transductive) instead of support-only statistics."""
    within_alphabet: bool = False
    """Image tasks: draw all classes of each test episode from one alphabet (e.g. Lake et al.'s 20-way 1-shot
    within-alphabet benchmark), independently of `task.within_alphabet`."""
    split: str = "test"
    """Split to evaluate on: test | val."""
    train_tasks: int = 0
    """Also evaluate on this many training tasks, reported separately under `train_split` in eval.json (the
    meta-train figure of Meta-World's tables); 0 = only the held-out split."""


@dataclass(frozen=True)
class RLConfig:
    horizon: int = 100
    """Steps per episode."""
    num_episodes: int = 20
    """Episodes (trajectories) per inner update / per trial."""
    discount: float = 0.99
    """Reward discount gamma."""
    gae_lambda: float = 1.0
    """GAE lambda."""
    clip: float = 0.2
    """PPO clipping epsilon."""
    entropy_coef: float = 0.0
    """Entropy bonus weight."""
    entropy_schedule: str = "constant"
    """RL^2: constant | linear (anneal the entropy bonus to 0 over the run's `steps`: explore early, act
    near-deterministically by the end)."""
    value_coef: float = 0.5
    """RL^2: weight of the value-head (critic) loss next to the policy loss."""
    num_trials: int = 1
    """RL^2: trials sampled per task per meta-step (each trial is one fresh run of the recurrent policy)."""
    ppo_epochs: int = 1
    """RL^2: 1 = one gradient per meta-step (A2C); N > 1 = each chunk takes N local Adam steps of size
    algorithm.inner_lr on its trials (PPO's epochs) and returns the parameter change (pair it with
    algorithm.meta_optimizer=sgd, meta_lr=1)."""
    max_kl: float = 0.0
    """MAML-RL: 0 = the runtime's optimizer takes the mean meta-gradient; > 0 = each chunk takes a TRPO step
    over its tasks within this mean KL and returns the parameter change (pair it with
    algorithm.meta_optimizer=sgd, meta_lr=1; chunk_size = meta_batch_size is the paper's step)."""
    eval_episodes: int = 0
    """MAML-RL at test: episodes sampled per adaptation step (0 = rl.num_episodes; the paper's 2D navigation
    test: 40)."""
    eval_lr_decay: float = 1.0
    """MAML-RL at test: the step size of every adaptation step after the first is multiplied by this (the
    paper halves it: 0.5)."""
    init_log_std: float = 0.0
    """Gaussian policies: initial state-independent log standard deviation (0 = std 1, as rllab)."""
    reward_scale: float = 1.0
    """RL^2: rewards are divided by this in the policy's input and in the loss (Meta-World: 10, its
    per-step maximum)."""
    normalize_advantage: bool = False
    """RL^2: normalize each task's advantages to zero mean and unit variance, as PPO implementations do."""
    num_arms: int = 5
    """Bandits: arms k, success probabilities p_i ~ U[0, 1]."""
    num_pulls: int = 10
    """Bandits: pulls n per trial (a trial is n one-step episodes)."""


@dataclass(frozen=True)
class LoggingConfig:
    tensorboard: bool = False
    """TensorBoard event files under <run dir>/tensorboard: every metrics row (tags train/KEY, the values of
    metrics.parquet), the final evaluation (eval/METRIC) and its adaptation curve (run eval_step<N>). Needs
    the `tracking` extra."""
    mlflow: bool = False
    """An MLflow run in MLFLOW_TRACKING_URI (default: MLflow's own local store in the working directory): the
    resolved config as params, every metrics row, the final evaluation, and eval.json, curve.png and
    config.yaml as artifacts. Needs the `tracking` extra."""
    mlflow_experiment: str = "meta-dist"
    """MLflow experiment the run is logged to (created if missing)."""


@dataclass(frozen=True)
class Config:
    name: str = "sinusoid_maml"
    """A label for the run."""
    seed: int = 0
    """Run seed: task specs derive from (seed, step, index), so the same seed gives the same run."""
    steps: int = 20000
    """Meta-steps to train."""
    time_budget_s: float = 0.0
    """Stop meta-training after this many seconds (0 = no limit), then checkpoint and evaluate."""
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# task.name, model.name and algorithm.name are open sets (built-ins, plug-ins, import paths): the
# registry checks them.
CHOICES = {
    "task.split": ("vinyals", "random", "background"),
    "task.episodes": ("fixed", "meta_dataset"),
    "model.activation": ("relu", "tanh"),
    "algorithm.inner_optimizer": ("sgd", "adam"),
    "algorithm.meta_optimizer": ("adam", "sgd"),
    "algorithm.meta_lr_schedule": ("constant", "linear", "step"),
    "rl.entropy_schedule": ("constant", "linear"),
    "algorithm.distance": ("euclidean", "cosine"),
    "runtime.backend": ("ray", "local"),
    "runtime.mode": ("sync", "async"),
    "eval.split": ("test", "val"),
}

POSITIVE = ("steps", "task.ways", "task.shots", "task.num_query", "algorithm.inner_steps",
            "algorithm.meta_batch_size", "runtime.threads_per_worker", "runtime.chunk_size",
            "checkpoint.every", "checkpoint.keep", "eval.num_tasks", "eval.num_query",
            "rl.horizon", "rl.num_episodes", "runtime.max_bad_steps", "rl.num_trials", "rl.num_arms",
            "rl.num_pulls", "rl.reward_scale", "algorithm.metric_scale", "rl.ppo_epochs", "rl.eval_lr_decay")
NON_NEGATIVE = ("seed", "time_budget_s", "runtime.num_workers", "runtime.num_gpus_per_worker",
                "runtime.num_gpu_workers", "runtime.staleness", "algorithm.inner_lr", "algorithm.meta_lr",
                "algorithm.inner_batch_size", "algorithm.meta_lr_decay_every", "eval.inner_steps",
                "eval.max_inner_steps", "eval.ways", "eval.shots", "eval.query_per_class", "eval.inner_lr", "eval.train_tasks",
                "runtime.chunk_timeout_s", "runtime.placement_timeout_s", "runtime.stall_timeout_s", "rl.entropy_coef", "rl.value_coef",
                "rl.max_kl", "rl.eval_episodes")
