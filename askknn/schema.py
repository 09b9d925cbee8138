"""The parameters, declared: every key of `params.yaml` and `presets/<name>.yaml`, its type, its range
and what it means. This module is the one place that documents them.

`params.yaml` holds the two switches (`preset`, `eps`); a preset holds the seven sections `data`,
`model`, `train`, `dknn`, `methods`, `attacks`, `experiments`, every key of them required. Budgets
(`eps`, `train.eps`, ...) are integers in units of 1/255; step sizes of training attacks are in 1/255
too. Unknown keys are rejected with the nearest valid name, missing keys are named with their
section, and the cross-field rules at the end (split sizes against the classes and the dataset, K
against a class's share of the bank, ...) run before any work.

`python -m askknn.schema` prints every key with its description.
"""
import difflib
import typing
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from askknn.data import DATASETS
from askknn.models import list_models, scalable_models
from askknn.shared import LAYERS, METRICS, ParamError

KEY = "\x00key\x00"   # replaced by the dotted path of the failing key when an error is reported
BIG = 10**7


def _fail(text: str):
    raise PydanticCustomError("askknn", "{text}", {"text": text})


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _yaml_hint(v) -> str:
    """YAML 1.1 (PyYAML) reads `1e-3` as text; say so when a string would have been a number."""
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            return ""
        return f" (YAML reads {v} as text: write it with a decimal point, e.g. {float(v)!r})"
    return ""


# ---------------------------------------------------------------- value types
def integer(lo: int, hi: int, verb: str = "="):
    """An int in [lo, hi]; `verb` 'has' words errors for list items (`k_values has 600, ...`)."""
    def check(v):
        if not _is_int(v) or not lo <= v <= hi:
            _fail(f"{KEY} has {v!r}; every value must be an integer in [{lo}, {hi}]{_yaml_hint(v)}" if verb == "has"
                  else f"{KEY} = {v!r} must be an integer in [{lo}, {hi}]{_yaml_hint(v)}")
        return v
    return Annotated[int, BeforeValidator(check), Field(ge=lo, le=hi)]


def number(lo: float, hi: float, low_open: bool = False):
    """A float (an int is accepted) in [lo, hi], or (lo, hi] with low_open."""
    def check(v):
        if not _is_number(v) or not (lo < v if low_open else lo <= v) or not v <= hi:
            _fail(f"{KEY} = {v!r} must be a number in {'(' if low_open else '['}{lo}, {hi}]{_yaml_hint(v)}")
        return float(v)
    return Annotated[float, BeforeValidator(check), Field(gt=lo, le=hi) if low_open else Field(ge=lo, le=hi)]


def positive(verb: str = "="):
    def check(v):
        if not _is_number(v) or not v > 0:
            _fail(f"{KEY} has {v!r}; every value must be a positive number{_yaml_hint(v)}" if verb == "has"
                  else f"{KEY} = {v!r} must be positive (a number > 0){_yaml_hint(v)}")
        return float(v)
    return Annotated[float, BeforeValidator(check), Field(gt=0)]


def one_of(*allowed: str):
    def check(v):
        if v not in allowed:
            _fail(f"{KEY} = {v!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")
        return v
    return Annotated[Literal[allowed], BeforeValidator(check)]


def text(v):
    if not isinstance(v, str) or not v:
        _fail(f"{KEY} = {v!r} must be a non-empty string")
    return v


def boolean(v):
    if not isinstance(v, bool):
        _fail(f"{KEY} = {v!r} must be true or false")
    return v


def layer(v):
    if v not in LAYERS:
        _fail(f"{KEY} lists {v!r}, a layer the model does not have; the model's layers are: {', '.join(LAYERS)}")
    return v


def nonempty(v):
    if isinstance(v, list) and not v:
        _fail(f"{KEY} is empty; list one or more values")
    return v


def distinct(v):
    if isinstance(v, list) and len(set(map(str, v))) != len(v):
        _fail(f"{KEY} = {v!r} repeats a value; list each value once")
    return v


def guides_value(v):
    if v != "k" and (not _is_int(v) or not 1 <= v <= BIG):
        _fail(f"{KEY} = {v!r} must be the string k (as many guides as the DkNN's K) or an integer >= 1")
    return v


def optional_count(v):
    if v is not None and (not _is_int(v) or not 1 <= v <= BIG):
        _fail(f"{KEY} = {v!r} must be null (every training image not held out) or an integer in [1, {BIG}]"
              f"{_yaml_hint(v)}")
    return v


Str = Annotated[str, BeforeValidator(text)]
Bool = Annotated[bool, BeforeValidator(boolean)]
Eps = integer(0, 255)
Count = integer(1, BIG)
Steps = integer(0, 10**6)
Seed = integer(0, 2**32 - 1)
Positive = positive()
Layer = Annotated[str, BeforeValidator(layer)]
Metric = one_of(*METRICS)
Layers = Annotated[list[Layer], BeforeValidator(nonempty)]
Positives = Annotated[list[positive("has")], BeforeValidator(nonempty)]
Counts = Annotated[list[integer(1, BIG, "has")], BeforeValidator(nonempty)]
EpsList = Annotated[list[Eps], BeforeValidator(nonempty)]
Seeds = Annotated[list[Seed], BeforeValidator(nonempty), BeforeValidator(distinct)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def doc(description: str):
    """A required key with its description."""
    return Field(description=description)


# ---------------------------------------------------------------- sections
class Data(Section):
    """Where the images come from and how they are split (all splits class-balanced, one seed)."""
    dataset: one_of(*sorted(DATASETS)) = doc("the dataset: fashion_mnist, cifar10, imagenette or digits "
                                             "(scikit-learn's, for tests)")
    source: Str = doc("auto (Debian's dataset-fashion-mnist files), download (torchvision), or a path to a "
                      "folder (ImageFolder tree, or the four Fashion-MNIST *-ubyte.gz files) or to a "
                      ".tar.gz/.zip of a tree; its content hash goes to metrics/data.json")
    root: Str = doc("where downloads and unpacked archives go")
    train_size: Annotated[Optional[int], BeforeValidator(optional_count)] = doc(
        "class-balanced subset of the training images used for training; null = every training image not "
        "held out. A multiple of the number of classes")
    val_size: Count = doc("held-out training images (never trained on): per-epoch metrics, DkNN-Atk "
                          "thresholds, attack tuning. A multiple of the number of classes")
    bank_size: Count = doc("the DkNN's feature bank, drawn from the training split. A multiple of the number "
                           "of classes; a class's share (bank_size / classes) bounds every K")
    eval_size: Count = doc("class-balanced subset of the TEST set on which everything is evaluated. A multiple "
                           "of the number of classes, at most the test set's size")
    seed: Seed = doc("seed of every split")


class Model(Section):
    name: one_of(*list_models()) = doc("the network (askknn.models registry); its blocks are conv1..conv5")
    width: number(0, 16, low_open=True) = doc("scales every channel count (1: the published network; "
                                              "models with a width option only, e.g. vgg16_bn)")


class Train(Section):
    """Adversarial training (AT, PGD on CE); the defenses add one term to it (see methods)."""
    epochs: integer(1, 10**4) = doc("training epochs")
    batch_size: integer(1, 10**5) = doc("training batch size of one process: under torchrun the global batch "
                                        "is train.nproc x batch_size")
    lr: number(0, 10, low_open=True) = doc("SGD learning rate of one process's batch; under torchrun it is "
                                           "multiplied by the number of processes (linear scaling)")
    momentum: number(0, 1) = doc("SGD momentum")
    nesterov: Bool = doc("Nesterov momentum")
    weight_decay: number(0, 1) = doc("SGD weight decay")
    schedule: one_of("step", "onecycle") = doc("learning rate: step (multiplied by gamma at each milestone) or "
                                               "onecycle (fast AT's: linear 0 -> lr over 40% of the batches, "
                                               "then -> 0; milestones and gamma unused)")
    milestones: list[integer(1, 10**4, "has")] = doc("epochs at which the learning rate is multiplied by gamma")
    gamma: number(0, 1, low_open=True) = doc("learning-rate factor at each milestone")
    eps: Eps = doc("AT budget, in 1/255 (the evaluation budget is the top-level eps)")
    pgd_steps: Steps = doc("PGD steps of the training attack")
    pgd_step_size: Positive = doc("PGD step size of the training attack, in 1/255")
    val_pgd_steps: Steps = doc("PGD steps of the held-out robust accuracy after each epoch")
    augment: one_of("none", "crop_flip") = doc("data augmentation: none or crop_flip (random crop, flip)")
    attack_mode: one_of("eval", "train") = doc("the model's mode while crafting training attacks "
                                               "(the authors used train)")
    precision: one_of("fp32", "bf16") = doc("bf16: the network runs under bf16 autocast on CUDA (losses stay "
                                            "float32); CPU runs are always fp32")
    launcher: one_of("python", "torchrun") = doc("torchrun: the stage starts itself again under torchrun "
                                                 "--standalone with train.nproc processes (DDP: one per GPU, "
                                                 "or gloo on the CPU); python: one process")
    nproc: integer(1, 1024) = doc("processes (GPUs) of one machine under torchrun; each trains on "
                                  "train.batch_size images per step, the learning rate scaled by their number")


class DkNN(Section):
    """The Deep kNN classifier (paper eq. 1) and its feature bank."""
    layers: Layers = doc("layers the bank stores")
    layer_sets: Annotated[list[Layers], BeforeValidator(nonempty)] = doc(
        "the DkNN configurations every table reports; each lists layers of dknn.layers")
    metrics: Annotated[list[Metric], BeforeValidator(nonempty)] = doc("kNN metrics: cosine and/or l2")
    k: Count = doc("K, neighbours per layer; at most a class's share of the bank")
    batch_size: integer(1, 10**5) = doc("batch size of feature extraction and kNN search")


class AT(Section):
    extra_loss: one_of("none") = doc("AT adds no loss term (always none)")


class ATWide(Section):
    """AT trained on PGD at ASK-Def's G2 budget: separates ASK-Def's loss term from its budget."""
    eps: Eps = doc("training PGD budget, in 1/255")
    steps: integer(1, 10**4) = doc("training PGD steps")
    step_size: Positive = doc("training PGD step size, in 1/255")


class AskDef(Section):
    """ASK-Def (Algorithm 1): + lam x defense-form ASK loss at one layer on G2's examples."""
    lam: number(0, 1e6) = doc("lambda in eq. 6; 0 makes it AT")
    tau: Positive = doc("temperature of the ASK loss")
    metric: Metric = doc("similarity of the ASK loss: cosine or l2")
    layer: Layer = doc("layer of the ASK loss")
    refs_per_class: integer(1, 10**4) = doc("reference images per class (plus their PGD copies)")
    eps: Eps = doc("G2's budget, in 1/255 (paper: twice the AT budget)")
    steps: integer(1, 10**4) = doc("G2's steps")
    step_size: Positive = doc("G2's step size, in 1/255")


class ATSNN(Section):
    """AT+SNN: + beta x soft nearest neighbour loss at one layer."""
    beta: number(0, 1e6) = doc("weight of the SNN loss; 0 makes it AT")
    temperature: Positive = doc("SNN temperature")
    distance: one_of("cosine", "sqeuclidean") = doc("SNN distance")
    layer: Layer = doc("layer of the SNN loss")
    features: one_of("adversarial", "clean") = doc("features of the adversarial or the clean batch")


class Methods(Section):
    """What each training method adds to AT (the train section)."""
    at: AT = doc("AT (Madry)")
    at_wide: ATWide = doc("AT at ASK-Def's G2 budget (control)")
    askdef: AskDef = doc("ASK-Def")
    atsnn: ATSNN = doc("AT+SNN")


class PerMetric(Section):
    cosine: Positives = doc("values for the cosine metric")
    l2: Positives = doc("values for the l2 metric")


class Ask(Section):
    """ASK-Atk."""
    k_pos: Count = doc("K+, in-class references; at most a class's share of the bank")
    k_neg: Count = doc("K-, references per other class; at most a class's share of the bank")
    tau_grid: PerMetric = doc("temperatures tried when tuning, per metric")
    omega_grid: Annotated[list[number(0, 1)], BeforeValidator(nonempty)] = doc(
        "weights of the first layer tried when two layers are attacked")


class DkNNAtk(Section):
    """DkNN-Atk (Sitawarin & Wagner)."""
    guides: Annotated[Union[Literal["k"], int], BeforeValidator(guides_value)] = doc(
        "m guides of the nearest wrong class: k (the DkNN's K) or an integer at most a class's share of the bank")
    steepness_grid: PerMetric = doc("sigmoid steepness a tried when tuning, per metric")
    optimizer: one_of("sign", "adam") = doc("sign: the ASK paper's step budget; adam: the original optimiser")
    adam_lr: Positive = doc("Adam's learning rate (optimizer: adam)")
    adam_steps: integer(1, 10**6) = doc("Adam's steps (optimizer: adam)")


class AdvKnn(Section):
    """AdvKnn (Li et al.): the deep kNN block trained on the bank features."""
    epochs: integer(1, 10**5) = doc("training epochs of the kNN block")
    lr: Positive = doc("its learning rate")
    lam_single: number(0, 1e6) = doc("CE weight of the block used against one layer")
    lam_multi: number(0, 1e6) = doc("CE weight of the block used against several layers")


class AskAPGD(Section):
    """ASK-APGD (ours): the non-saturating ASK margin with APGD's schedule and restarts."""
    steps: integer(1, 10**6) = doc("forward-backward passes per run (APGD iterations)")
    restarts: integer(1, 10**3) = doc("runs per image; an image the DkNN already misclassifies stops")
    restart: one_of("best", "random") = doc(
        "best: a run starts from the best point so far, with X+ and X- found again there; random: a fresh "
        "random start with the clean input's references (Croce & Hein)")


class SW20(Section):
    """SW20 (Sitawarin & Wagner 2020), fixed-budget l_inf form."""
    reselect: integer(1, 10**6) = doc(
        "steps between re-selections of the target, guides and thresholds at the current x' (when the DkNN "
        "also judges x' to keep the best point); 4 of 20 steps: the original's 100 of 500 iterations")


class Attacks(Section):
    """Settings shared by every attack evaluation; the budget is the top-level eps."""
    batch_size: integer(1, 10**5) = doc("attack batch size")
    steps: Steps = doc("steps of every iterative attack")
    step_fraction: number(0, 1, low_open=True) = doc("step = step_fraction x eps for every iterative attack "
                                                     "and Table 5's PGD (0.25: the paper's 2/255 at 8/255)")
    tuning_size: Count = doc("held-out images (from data.val_size) on which tau, omega and the steepness are "
                             "tuned; never evaluated ones")
    random_starts: integer(1, 10**3) = doc("random starts of Table 1's ASK-Atk cells")
    seed: Seed = doc("seed of every attack run's generator")
    ask: Ask = doc("ASK-Atk")
    dknn_atk: DkNNAtk = doc("DkNN-Atk")
    advknn: AdvKnn = doc("AdvKnn")
    ask_apgd: AskAPGD = doc("ASK-APGD")
    sw20: SW20 = doc("SW20")
    worst_case_size: Count = doc("the first N evaluation images attacked by ASK-APGD and SW20, on which the "
                                 "worst case over every attack is reported (Tables 1 and 3)")


class Experiments(Section):
    """The paper's figures and appendix tables (cosine unless stated)."""
    subset_size: Count = doc("images of the appendix tables and curves: the first N of the evaluation set")
    eps_sweep: EpsList = doc("Figure 1: attack budgets, in 1/255")
    sweep_layers: Layers = doc("layers attacked in the sweeps and the appendix (within dknn.layers)")
    k_values: Counts = doc("Figures 4 and 5: K of the DkNN and of the attacker")
    tau_values: Positives = doc("Figure 4 left: fixed temperatures")
    k_pos_values: Counts = doc("Table 9: K+ values")
    k_neg_values: Counts = doc("Table 9: K- values")
    pgd_eps: EpsList = doc("Table 5: PGD budgets on the DNN, in 1/255")
    pgd_steps: Steps = doc("Table 5: PGD steps")
    pgd_restarts: integer(1, 10**3) = doc("Table 5: PGD restarts")


class Switches(Section):
    """params.yaml: the two switches."""
    preset: Str = doc("selects presets/<preset>.yaml")
    eps: Eps = doc("evaluation budget of every attack, in 1/255 (8 means 8/255)")
    seeds: Seeds = doc("training seeds: every method is trained once per seed; the first seed's models are "
                       "tuned, attacked in Table 1 and used by the appendix")


class Preset(Section):
    """presets/<name>.yaml: a complete configuration."""
    data: Data = doc("data and splits")
    model: Model = doc("the network")
    train: Train = doc("adversarial training")
    dknn: DkNN = doc("the DkNN")
    methods: Methods = doc("training methods")
    attacks: Attacks = doc("attacks")
    experiments: Experiments = doc("figures and appendix tables")

    @model_validator(mode="after")
    def cross_field_rules(self):
        problems = cross_field_problems(self)
        if problems:
            _fail("\n".join(problems))
        return self


# ---------------------------------------------------------------- cross-field rules
def cross_field_problems(p: Preset) -> list[str]:
    d, spec = p.data, DATASETS[p.data.dataset]
    classes = spec.num_classes
    out = []
    sizes = {"train_size": d.train_size, "val_size": d.val_size, "bank_size": d.bank_size,
             "eval_size": d.eval_size}
    for key, value in sizes.items():
        if value is not None and value % classes:
            what = "so the bank is class-balanced" if key == "bank_size" else "so every class gets the same share"
            out.append(f"data.{key} = {value} must be a multiple of the {classes} classes {what} "
                       f"(e.g. {max(classes, value // classes * classes)})")
    if d.source not in spec.sources and d.source in ("auto", "download"):
        out.append(f"data.source = {d.source!r} does not work for {d.dataset}; use "
                   f"{' or '.join(spec.sources)}, or a path to the data ({spec.how_to_get})")
    if d.dataset == "digits" or d.source in spec.sources:   # the standard dataset: its sizes are known
        if d.eval_size > spec.test_images:
            out.append(f"data.eval_size = {d.eval_size} is larger than the {spec.test_images} images of the "
                       f"{d.dataset} test set; evaluation images come from the test set, so lower data.eval_size "
                       f"(raising data.train_size does not help)")
        used = d.val_size + (d.train_size or 0)
        if used > spec.train_images:
            out.append(f"data.val_size + data.train_size = {used} is more than the {spec.train_images} training "
                       f"images of {d.dataset}; lower them (data.train_size: null uses every image not held out)")
    train_split = d.train_size if d.train_size is not None else (
        spec.train_images - d.val_size if d.dataset == "digits" or d.source in spec.sources else None)
    if train_split is not None and d.bank_size > train_split:
        out.append(f"data.bank_size = {d.bank_size} is larger than the training split ({train_split} images"
                   f"{' = data.train_size' if d.train_size else ''}); the bank is drawn from it, so lower "
                   f"data.bank_size or raise data.train_size")
    share = d.bank_size // classes
    hint = f"({share} = data.bank_size / {classes}); lower it or raise data.bank_size"

    def within_share(name, values, single):
        for v in values:
            if v > share:
                out.append(f"{name} = {v} is larger than a class's share of the bank {hint}" if single else
                           f"{name} has {v}, larger than a class's share of the bank {hint}")
                return

    within_share("dknn.k", [p.dknn.k], True)
    within_share("attacks.ask.k_pos", [p.attacks.ask.k_pos], True)
    within_share("attacks.ask.k_neg", [p.attacks.ask.k_neg], True)
    if p.attacks.dknn_atk.guides != "k":
        within_share("attacks.dknn_atk.guides", [p.attacks.dknn_atk.guides], True)
    for key in ("k_values", "k_pos_values", "k_neg_values"):
        within_share(f"experiments.{key}", getattr(p.experiments, key), False)

    stored = p.dknn.layers
    for name, layer_lists in (("dknn.layer_sets", p.dknn.layer_sets), ("experiments.sweep_layers",
                                                                       [p.experiments.sweep_layers])):
        bad = [lay for layers in layer_lists for lay in layers if lay not in stored]
        if bad:
            out.append(f"{name} lists {bad[0]!r}, a layer the bank does not store; dknn.layers is: "
                       f"{', '.join(stored)}")
    if p.model.width != 1 and p.model.name not in scalable_models():
        out.append(f"model.width = {p.model.width} but model {p.model.name!r} has no width option; set model.width: "
                   f"1 or use one of: {', '.join(scalable_models())}")
    if p.attacks.tuning_size > d.val_size:
        out.append(f"attacks.tuning_size = {p.attacks.tuning_size} is larger than data.val_size = {d.val_size}; "
                   f"tuning images come from the held-out split, so lower it or raise data.val_size")
    for key, n in (("experiments.subset_size", p.experiments.subset_size),
                   ("attacks.worst_case_size", p.attacks.worst_case_size)):
        if n > d.eval_size:
            out.append(f"{key} = {n} is larger than data.eval_size = {d.eval_size}; these are the first images "
                       f"of the evaluation set, so lower it or raise data.eval_size")
    return out


# ---------------------------------------------------------------- error reporting
RENAMED = {
    ("attacks", "step_size"): "attacks.step_size was replaced by attacks.step_fraction: the step of every "
                              "attack is step_fraction x eps (0.25 for eps/4)",
}
ALIASES = {"learning_rate": "lr", "lr_milestones": "milestones", "num_epochs": "epochs", "K": "k",
           "metric": "metrics", "layer": "layers"}


def _sections(annotation) -> list[type[BaseModel]]:
    """The Section classes inside an annotation (through Annotated, Optional, list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _sections(arg)]


def _model_at(root: type[BaseModel], loc) -> type[BaseModel] | None:
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        inner = _sections(field.annotation) if field else []
        if not inner:
            return None
        model = inner[0]
    return model


def _suggest(key: str, allowed: list[str]) -> str | None:
    lowered = {a.lower(): a for a in allowed}
    if key.lower() in lowered:
        return lowered[key.lower()]
    if ALIASES.get(key) in allowed:
        return ALIASES[key]
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def _path(loc) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, int))


def explain(error: dict, root: type[BaseModel], where: str) -> str:
    """One pydantic error as a sentence that names the key, the file and the fix."""
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    path = _path(loc)
    if kind == "askknn":
        message = error["ctx"]["text"].replace(KEY, path)
    elif kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        model = _model_at(root, parent)
        allowed = list(model.model_fields) if model else []
        section = _path(parent)
        if tuple(map(str, loc)) in RENAMED:
            message = RENAMED[tuple(map(str, loc))]
        elif root is Switches and key in Preset.model_fields:
            message = (f"{key} is a preset section, not a switch: params.yaml holds only preset and eps. Change "
                       f"a preset value in presets/<preset>.yaml, e.g. dvc exp run -S "
                       f"'presets/fashion_mnist.yaml:{key}.<key>=<value>'")
        elif root is Preset and key in Switches.model_fields:
            message = f"{key} belongs in params.yaml, not in a preset"
        else:
            guess = _suggest(key, allowed)
            scope = f"{section}." if section else ""
            message = (f"{scope}{key} is not a known parameter" + (f"; did you mean {scope}{guess}?" if guess else "")
                       + f" ({'the keys of ' + section if section else 'the keys here'}: {', '.join(allowed)}; "
                       f"see askknn/schema.py)")
    elif kind == "missing":
        model = _model_at(root, loc[:-1])
        field = model.model_fields.get(str(loc[-1])) if model else None
        what = f": {field.description}" if field and field.description else ""
        section = _path(loc[:-1])
        message = f"{path} is missing{' from section ' + section if section else ''}{what}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"{path or 'the file'} = {value!r} must be a section of keys (a YAML mapping)"
    elif kind in ("list_type", "tuple_type"):
        model = _model_at(root, loc[:-1])
        field = model.model_fields.get(str(loc[-1])) if model else None
        message = f"{path} = {value!r} must be a list" + (f" ({field.description})" if field else "")
    else:
        message = f"{path} = {value!r}: {error['msg']}"
    return "\n".join(f"{where}: {line}" for line in message.splitlines())


def check(model: type[BaseModel], raw: Any, where: str) -> BaseModel:
    """Validate `raw` against `model`; every problem is one line of the ParamError, which names `where`."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
        lines = [explain(e, model, where) for e in errors]   # an unknown key first: it explains a missing one
        raise ParamError("\n".join(lines)) from None


def describe(model: type[BaseModel] = Preset, prefix: str = "") -> list[str]:
    """`key: description` for every key, nested sections first-level-indented by their path."""
    lines = []
    for name, field in model.model_fields.items():
        inner = _sections(field.annotation)
        if inner and typing.get_origin(field.annotation) is not list:
            lines += describe(inner[0], f"{prefix}{name}.")
        else:
            lines.append(f"{prefix}{name}: {field.description}")
    return lines


if __name__ == "__main__":
    print("params.yaml:")
    print("\n".join("  " + line for line in describe(Switches)))
    print("presets/<name>.yaml:")
    print("\n".join("  " + line for line in describe(Preset)))
