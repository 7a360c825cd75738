"""Hydra launcher ``fused``: a sweep's compatible jobs as packs, each one batched optimization.

Thin on purpose: the config schema and the Launcher interface; the work is in
:mod:`featviz.app.fused` (imported at launch, so Hydra's plugin scan stays fast).
"""

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.featviz_fused.fused_launcher.FusedLauncher"
    max_images: Optional[int] = None  # images per step in one pack; null = what half the free memory holds
    backend: str = "local"  # local: packs one after another here | slurm: one array task per pack | submitit_local
    # Slurm (backend=slurm), as for launcher=slurm
    submitit_folder: Optional[str] = None  # null = <sweep dir>/.submitit/%j
    partition: Optional[str] = None
    gpus_per_node: Optional[int] = None
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[int] = None
    timeout_min: int = 60
    array_parallelism: int = 64
    max_num_timeout: int = 3
    signal_delay_s: int = 120
    setup: List[str] = field(default_factory=lambda: ["export WANDB_MODE=offline"])


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="featviz")


class FusedLauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        self.params = params
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from featviz.app.fused import launch

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        params = OmegaConf.to_container(OmegaConf.create(dict(self.params)), resolve=True)
        return launch(self.config, self.hydra_context, self.task_function, params, job_overrides, initial_job_idx)  # type: ignore[arg-type]
