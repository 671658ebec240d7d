"""The fully resolved settings of one training run (pydantic, no torch), and its stable hashes."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Options of one component, checked against what the component declares (config.validation); None = its defaults.
ComponentArgs = dict[str, float | int | bool | str] | None


class Strict(BaseModel):
    """Base model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSettings(Strict):
    """Which long-tailed dataset and how it is built."""

    name: str = "cifar100_lt"
    imbalance_ratio: float = Field(100.0, ge=1.0, le=1e6, allow_inf_nan=False,
                                   description="n_max / n_min of the exponential profile")
    root: str | None = Field(None, description="data root; default $LTBENCH_DATA or the user cache dir")
    download: bool = Field(True, description="download official files through torchvision when missing")
    split_seed: int = Field(0, ge=0, lt=2**32,
                            description="legacy NumPy seed of the subset draw (official rand_number)")
    num_classes: int | None = Field(None, ge=2, le=100_000, description="synthetic; file datasets: a smaller "
                                                                       "synthetic JPEG set in their layout")
    max_per_class: int | None = Field(None, ge=1, le=100_000, description="synthetic only: images of the head class")
    test_per_class: int | None = Field(None, ge=1, le=100_000,
                                       description="synthetic only: balanced test images per class")
    image_size: int | None = Field(None, ge=8, le=1024, description="synthetic / file datasets: side of the images")
    train_list: str | None = Field(None, description="file datasets: train split list (default under root)")
    test_list: str | None = Field(None, description="file datasets: test split list (default under root)")
    format: Literal["jpeg_npz"] | None = Field(None, description="CIFAR: 'jpeg_npz' reads a JPEG copy (train.npz / "
                                                                    "test.npz under data.root) instead of the "
                                                                    "official batches; None = official files")
    color_jitter: bool | None = Field(None, description="file datasets: ColorJitter(0.4, 0.4, 0.4) in training; "
                                                         "None = the official code (ImageNet-LT on, iNat off; the "
                                                         "paper gives iNat ImageNet-LT's augmentation: true)")


class BackboneSettings(Strict):
    """Which timm model to create (pretrained weights are never used)."""

    name: str = "resnet32_cifar"
    num_experts: int | None = Field(None, ge=1, le=64, description="RIDE backbones: experts (3 or 4)")
    args: ComponentArgs = Field(None, description="keyword arguments of the timm model (e.g. drop_rate)")


class MethodSettings(Strict):
    """The three method axes of the official code: loss, re-weighting rule, batch mixer."""

    loss: str = "ce"
    rule: str = "none"
    mixer: str = "none"
    loss_args: ComponentArgs = Field(
        None, description="options of the loss, e.g. RIDE's diversity_factor / reweight_factor, LDAM's max_m")
    rule_args: ComponentArgs = Field(None, description="options of the rule, e.g. DRW's beta")
    mixer_args: ComponentArgs = Field(None, description="options of the mixer, e.g. Remix's kappa / tau")
    reweight_epoch: int | None = Field(
        None, ge=0, description="0-based epoch where DRW / RIDE re-weighting starts; None = the dataset's "
                                "(160 CIFAR, 80 ImageNet-LT, 160 iNaturalist; 80% of the run otherwise)")


class MixerSettings(Strict):
    """Settings shared by the batch mixers (CMO and its relatives)."""

    prob: float = Field(0.5, ge=0.0, le=1.0, description="probability that a batch is mixed")
    alpha: float = Field(1.0, gt=0.0, le=1e3, allow_inf_nan=False, description="lambda ~ Beta(alpha, alpha)")
    start: int = Field(3, description="active only while start < epoch (0-based)")
    end: int = Field(3, ge=0, description="... and epoch < epochs - end")
    fg_power: float = Field(1.0, ge=0.0, description="r of q(r): per-sample weight (1/n_k)^r")
    foreground: str | None = Field(None, description="sampler of the foreground stream instead of the mixer's own "
                                                      "(e.g. effective_number for Table 10's E(k))")
    q_semantics: Literal["per_sample", "per_class"] = Field(
        "per_sample", description="per_sample = official code, per_class = the paper's Eq. 2"
    )
    background_window: Literal["always", "window"] = Field(
        "always", description="CMO_back / CMO_minor: their minority-weighted background stream in every epoch "
                              "(always) or only where the mixer is active, the instance stream elsewhere (window)")
    remix_labels: Literal["batch", "per_sample"] = Field(
        "batch", description="Remix's label weights: batch = BagofTricks-LT's code (their batch mean weights the two "
                             "mean-reduced losses), per_sample = the Remix paper (per-sample mixtures)")


class TrainSettings(Strict):
    """Optimiser, schedule and loop settings."""

    epochs: int = Field(200, gt=0, le=10_000)
    batch_size: int = Field(128, gt=0, le=65_536)
    lr: float = Field(0.1, gt=0.0, le=100.0, allow_inf_nan=False, description="base learning rate for batch 128")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(2e-4, ge=0.0, le=1.0, allow_inf_nan=False,
                                description="applied to every parameter, BN included")
    nesterov: bool = False
    schedule: str = "cifar_step"
    schedule_args: ComponentArgs = Field(None, description="options of the schedule besides warm-up, milestones and "
                                                           "gamma (which have their own fields)")
    warmup_epochs: int | None = Field(None, ge=0, le=10_000, description="None = the schedule's own value")
    milestones: list[Annotated[int, Field(ge=1, le=10_000)]] | None = Field(
        None, description="None = the schedule's own (1-based) epochs")
    gamma: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False,
                                description="None = the schedule's own decay factor")
    sampler: str = Field("instance", description="background (main) stream sampler")
    sampler_args: ComponentArgs = Field(None, description="options of train.sampler (the background stream's)")
    augment: str = Field("standard", description="train augmentation: standard (pad-crop + flip) or a registered one")
    pipeline: Literal["tensor", "reference", "gpu_decode"] = Field(
        "tensor", description="tensor: split on the device, batched augmentation; reference: DataLoader workers "
                              "(file datasets with tensor too); gpu_decode: file datasets' JPEGs decoded and "
                              "augmented in batches on the training device")
    workers: int = Field(4, ge=0, description="DataLoader workers (reference pipeline and file datasets); "
                                              "gpu_decode: threads reading the files")
    steps_per_epoch: int | None = Field(None, gt=0, description="cap on batches per epoch (smoke runs)")
    bn_groups: int = Field(1, ge=1, le=64, description="BatchNorm statistics per this many chunks of each batch (the "
                                                       "reference's nn.DataParallel GPUs; running statistics from "
                                                       "chunk 0); with DDP, bn_groups / processes chunks per process "
                                                       "(1: one BatchNorm batch per process)")
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto | cpu | cuda | cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="forward under bf16 autocast (losses and weights fp32); auto: bf16 on CUDA, fp32 on CPU")
    channels_last: bool | None = Field(None, description="NHWC model and inputs; None: on CUDA")
    cuda_graph: bool | None = Field(None, description="replay forward + backward from a CUDA graph; None: on CUDA")
    compile: bool = Field(False, description="torch.compile the model for full-size batches (costs tens of seconds "
                                             "of compilation per run)")
    checkpoint_every_s: float = Field(300.0, ge=0.0, description="save the resumable state at the end of an epoch "
                                      "once this many seconds have passed since the last save (0: every epoch)")


class Stage2Settings(Strict):
    """MiSLAS-style second stage: frozen backbone (BN statistics still update), class-balanced sampling,
    classifier + learnable per-class logit scale, label-aware smoothing, cosine lr (CIFAR-100 r100 defaults)."""

    epochs: int = Field(10, gt=0, le=10_000)
    lr: float = Field(0.1, gt=0.0, le=100.0, allow_inf_nan=False,
                      description="cosine from lr to 0; the logit scale uses it as is")
    lr_factor: float = Field(0.2, gt=0.0, description="classifier lr = lr_factor x lr (MiSLAS CIFAR-100 r100: 0.2)")
    eps_head: float = Field(0.4, ge=0.0, lt=1.0)
    eps_tail: float = Field(0.1, ge=0.0, lt=1.0)
    sampler: str = Field("ros", description="class-balanced draws with replacement")
    batch_size: int = Field(128, gt=0, le=65_536)
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0, allow_inf_nan=False)


class EvalSettings(Strict):
    """Evaluation: shot groups from train counts, and an optional cap for smoke runs."""

    many_above: int = Field(100, ge=0, description="many-shot: n > many_above")
    few_below: int = Field(20, ge=0, description="few-shot: n < few_below (test.py convention)")
    test_limit_per_class: int | None = Field(None, gt=0, description="cap on test images per class")

    @model_validator(mode="after")
    def _ordered(self) -> EvalSettings:
        if self.few_below > self.many_above + 1:
            raise ValueError("few_below must not exceed many_above + 1")
        return self


class RunSettings(Strict):
    """Everything that determines one training run; hashing it gives the run id."""

    seed: int = Field(0, ge=0, lt=2**32, description="seeds torch, the data-order generator and NumPy (< 2^32)")
    data: DataSettings = DataSettings()
    backbone: BackboneSettings = BackboneSettings()
    method: MethodSettings = MethodSettings()
    mixer: MixerSettings = MixerSettings()
    train: TrainSettings = TrainSettings()
    eval: EvalSettings = EvalSettings()
    stage2: Stage2Settings | None = Field(None, description="a second, fine-tuning stage on the stage-1 weights")

    def stage1(self) -> RunSettings:
        """The settings of the first stage alone (the run whose weights a second stage loads)."""
        return self.model_copy(update={"stage2": None})

    def identity(self) -> dict[str, Any]:
        """The settings that define the experiment: where data lives, which device runs it and execution details that
        leave the maths alone (CUDA graph, memory layout, compile, packing) are left out. A precision other than
        'auto' changes the numbers and is in (an fp32 control is its own run); 'auto' (bf16 on CUDA, fp32 on the CPU)
        is the default experiment, like the device."""
        out = self.model_dump(mode="json", exclude=_NOT_IDENTITY, exclude_none=True)  # new optional fields keep ids
        if self.train.precision != "auto":
            out["train"]["precision"] = self.train.precision
        if self.train.bn_groups == 1:  # the default (one BatchNorm batch): runs from before the setting keep their ids
            del out["train"]["bn_groups"]
        if self.method.mixer != "remix":  # settings of one mixer: other runs keep their ids
            del out["mixer"]["remix_labels"]
        if self.method.mixer not in ("cmo_back", "cmo_minor"):
            del out["mixer"]["background_window"]
        return out

    def config_hash(self) -> str:
        """Hash of the identity without the seed: runs that differ only in seed share it."""
        return _digest({k: v for k, v in self.identity().items() if k != "seed"})

    def run_hash(self, suite_version: int = 1) -> str:
        """Hash of the identity including the seed; a suite version above 1 is part of it (bumping a suite's version
        makes its runs new ones, and they share records only with suites at that version)."""
        ident = self.identity()
        return _digest(ident if suite_version <= 1 else {**ident, "suite_version": suite_version})


# How a run executes (where, in which precision and memory layout, graphed or not) is recorded with the run, not
# part of its id: the same experiment on a CPU, an fp32 GPU or a bf16 graphed GPU is one run.
_NOT_IDENTITY: dict[str, Any] = {"data": {"root", "download"},
                                 "train": {"device", "workers", "precision", "channels_last", "cuda_graph",
                                           "compile", "checkpoint_every_s"}}


# The train settings that runs trained together in one pack share: the step's batch shape and count, the optimiser
# and schedule, the execution. Everything else (loss, rule, mixer, samplers, seed, backbone, data) may differ.
PACK_SHARED_TRAIN = frozenset({"epochs", "batch_size", "steps_per_epoch", "bn_groups", "lr", "momentum", "weight_decay",
                               "nesterov", "schedule", "warmup_epochs", "milestones", "gamma", "device", "precision",
                               "channels_last", "cuda_graph", "compile", "checkpoint_every_s"})


def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:10]
