"""Where the paper and the official code differ (and where a run may pick either): what a run chose, for its record."""

from __future__ import annotations

from typing import Any

from benchmark.methods.rules import reweight_epoch_of
from benchmark.schema.settings import RunSettings

# (batch size, epochs) of the large-scale recipes: the paper's text vs the official README commands.
_RECIPES = {"imagenet_lt": {(256, 100): "paper (batch 256, 100 epochs)", (128, 100): "code README (batch 128)"},
            "inat2018": {(512, 200): "paper (batch 512, 200 epochs)", (256, 100): "code README (batch 256, 100 ep)"}}


# GPUs the paper trained on (nn.DataParallel: one BatchNorm batch per GPU, Supplementary A); the README asks for at
# least 4 GPUs for both datasets.
_REFERENCE_GPUS = {"imagenet_lt": 4, "inat2018": 8}


def _bn_groups_choice(s: RunSettings) -> str:
    g, b = s.train.bn_groups, s.train.batch_size
    per = f"{g} group(s) of {-(-b // g)} images per BatchNorm batch, running statistics from the first"
    gpus = _REFERENCE_GPUS.get(s.data.name)
    if gpus is None:
        return per
    if g == gpus:
        return f"{per} (the paper's {gpus} GPUs under the official nn.DataParallel)"
    if g == 4:
        return f"{per} (the README's 'at least 4 GPUs' under the official nn.DataParallel; the paper: {gpus})"
    return f"{per} (not a reference GPU count: the paper {gpus}, the README at least 4)"


def choices_for(s: RunSettings, data: Any) -> dict[str, str]:
    """Where the paper and the official code differ, the choice this run made (stored in its record)."""
    out = {"reported_epoch": "best test epoch (official code) and last epoch, both recorded",
           "shots": f"many n > {s.eval.many_above}, few n < {s.eval.few_below}"
                    + {20: " (test.py: n = 20 is medium)", 21: " (train scripts: n = 20 is few)"}.get(
                        s.eval.few_below, "")}
    if s.method.mixer != "none":
        out["q_semantics"] = s.mixer.q_semantics + (" (official code: per-sample weight (1/n_k)^r)"
                                                    if s.mixer.q_semantics == "per_sample" else " (paper Eq. 2)")
    if s.method.mixer.startswith("minority_"):
        out["minority_group"] = "medium + few classes by the suite's shot thresholds"
    if s.method.mixer == "remix":
        out["remix_labels"] = {"batch": "batch (BagofTricks-LT code: mean label weight x weighted-mean losses)",
                               "per_sample": "per_sample (Remix paper: per-sample mixtures)"}[s.mixer.remix_labels] \
            + "; normalised by the sum of the class weights"
        out["remix_schedule"] = f"probability {s.mixer.prob:g}, epochs {s.mixer.start} < e < " \
                                f"{s.train.epochs - s.mixer.end}" + (" (every batch of every epoch, as BagofTricks-LT)"
                                                                     if s.mixer.prob == 1 and s.mixer.start < 0
                                                                     and s.mixer.end == 0 else "")
    if s.method.loss == "ride":
        ride = s.train.weight_decay == 5e-4 and s.train.nesterov and s.train.augment == "crop_flip_rotate"
        out["ride_recipe"] = ("RIDE's CIFAR config (wd 5e-4, Nesterov, RandomRotation 15)" if ride else
                              f"not RIDE's config: wd {s.train.weight_decay:g}, Nesterov {s.train.nesterov}, "
                              f"augment {s.train.augment}")
        factor = (s.method.loss_args or {}).get("diversity_factor", -0.45)
        out["ride_diversity_factor"] = f"{factor:g} (RIDE's CIFAR-100 config; an earlier version of it has -0.2)"
    if s.method.mixer in ("cmo_back", "cmo_minor"):
        out["background_window"] = {"always": "minority-weighted background in every epoch (the paper does not say)",
                                    "window": "minority-weighted background only inside the mixer's window"}[
            s.mixer.background_window]
    if s.data.name in ("imagenet_lt", "inat2018"):
        jitter = s.data.color_jitter if s.data.color_jitter is not None else s.data.name == "imagenet_lt"
        out["color_jitter"] = ("on" if jitter else "off") + (" (official code)" if s.data.color_jitter is None
                                                             else " (set)")
        out["input_pipeline"] = ("gpu_decode (JPEGs decoded and augmented in batches on the training device)"
                                 if s.train.pipeline == "gpu_decode" else
                                 f"reference (PIL in {s.train.workers} persistent DataLoader workers)")
    if s.method.mixer == "cutmix":
        out["cutmix_foreground"] = "uniform draws with replacement (= CMO with r = 0)"
    if s.method.rule == "drw" or s.method.loss == "ride":
        src = "setting" if s.method.reweight_epoch is not None else "dataset default"
        out["reweight_epoch"] = f"{reweight_epoch_of(s, data)} ({src})"
    if s.data.name in _RECIPES:
        out["recipe"] = _RECIPES[s.data.name].get((s.train.batch_size, s.train.epochs), "custom batch size / epochs")
    if s.data.name in _REFERENCE_GPUS or s.train.bn_groups != 1:
        out["bn_groups"] = _bn_groups_choice(s)
    if s.stage2 is not None:
        out["stage2"] = "MiSLAS stage 2 on the stage-1 weights (frozen backbone, BN statistics update, LWS scale)"
    return out
