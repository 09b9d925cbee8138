"""The configuration sections: every key of `params.yaml` (Switches) and of `presets/<name>.yaml`
(Preset and its sections, the attacks' included), its type, its range and what it means. A Preset is
checked against the cross-field rules of askknn.config.rules once its keys are valid."""
from typing import Annotated, Generic, Literal, Optional, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from askknn.config.rules import cross_field_problems
from askknn.config.values import (Bool, Count, Counts, Eps, EpsList, Layer, Layers, Metric, NonNegatives, Positive,
                                  Positives, Seed, Seeds, Steps, Str, fail, guides_value, integer, nonempty, number,
                                  one_of, optional_count)
from askknn.datasets import DATASETS
from askknn.models import list_models


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
    cuda_graphs: Bool = doc("replay every training step as one CUDA graph (CUDA and one process; elsewhere "
                            "steps run eagerly and the run says so): the host then launches one graph per "
                            "batch instead of thousands of kernels. Needs schedule: step (a graph keeps the "
                            "rate it was captured with)")
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


Values = TypeVar("Values")


class PerMetric(Section, Generic[Values]):
    """One list of values per metric, `PerMetric[Positives]` or `PerMetric[NonNegatives]`."""
    cosine: Values = doc("values for the cosine metric")
    l2: Values = doc("values for the l2 metric")


class Ask(Section):
    """ASK-Atk."""
    k_pos: Count = doc("K+, in-class references; at most a class's share of the bank")
    k_neg: Count = doc("K-, references per other class; at most a class's share of the bank")
    tau_grid: PerMetric[Positives] = doc("temperatures tried when tuning, per metric")
    omega_grid: Annotated[list[number(0, 1)], BeforeValidator(nonempty)] = doc(
        "weights of the first layer tried when two layers are attacked")


class DkNNAtk(Section):
    """DkNN-Atk (Sitawarin & Wagner)."""
    guides: Annotated[Union[Literal["k"], int], BeforeValidator(guides_value)] = doc(
        "m guides of the nearest wrong class: k (the DkNN's K) or an integer at most a class's share of the bank")
    steepness_grid: PerMetric[NonNegatives] = doc(
        "sigmoid steepness a tried when tuning, per metric; 0 is the limit a -> 0, where the attack minimises the "
        "summed distances to the guides (sign steps ignore the gradient's vanishing scale)")
    optimizer: one_of("sign", "adam") = doc("sign: the ASK paper's step budget; adam: the original optimiser")
    adam_lr: Positive = doc("Adam's learning rate (optimizer: adam)")
    adam_steps: integer(1, 10**6) = doc("Adam's steps (optimizer: adam)")


class AdvKnn(Section):
    """AdvKnn (Li et al.): the deep kNN block trained on the bank features."""
    epochs: integer(1, 10**5) = doc("training epochs of the kNN block")
    lr: Positive = doc("its learning rate")
    lam_single: number(0, 1e6) = doc("CE weight of the block used against one layer")
    lam_multi: number(0, 1e6) = doc("CE weight of the block used against several layers")
    ce_share_grid: Annotated[list[number(0, 1)], BeforeValidator(nonempty)] = doc(
        "the CE term's share of the attack's objective, (1 - s) KL + s CE, tried when tuning (0: the KL to the "
        "clean kNN histogram alone, 1: the CE alone; the original's KL + lam CE is s = lam / (1 + lam))")


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
    guides_grid: Annotated[list[Count], BeforeValidator(nonempty)] = doc(
        "guides per class (m // 2) tried when tuning, each raised to at least (K + 1) // 2; at most a class's "
        "share of the bank")


class Attacks(Section):
    """Settings shared by every attack evaluation; the budget is the top-level eps."""
    batch_size: integer(1, 10**5) = doc("attack batch size")
    steps: Steps = doc("steps of every iterative attack")
    step_fraction: number(0, 1, low_open=True) = doc("step = step_fraction x eps for every iterative attack "
                                                     "and Table 5's PGD (0.25: the paper's 2/255 at 8/255)")
    tuning_size: Count = doc("held-out images (from data.val_size) on which every attack's grid is tuned "
                             "(ASK-Atk's tau and omega, DkNN-Atk's steepness, AdvKnn's CE share, SW20's guides); "
                             "never evaluated ones")
    random_starts: integer(1, 10**3) = doc("random starts of Table 1's ASK-Atk cells")
    seed: Seed = doc("seed of every attack run's generator")
    cuda_graphs: Bool = doc("on CUDA, replay an attack's steps as one CUDA graph per batch (the references "
                            "and the random start stay eager): the same computation without the host's "
                            "kernel launches. Attacks with their own loop (ASK-APGD, SW20, DkNN-Atk's Adam) "
                            "run as before; on the CPU it changes nothing")
    ask: Ask = doc("ASK-Atk")
    dknn_atk: DkNNAtk = doc("DkNN-Atk")
    advknn: AdvKnn = doc("AdvKnn")
    ask_apgd: AskAPGD = doc("ASK-APGD")
    sw20: SW20 = doc("SW20")
    worst_case_size: Count = doc("the first N evaluation images attacked by ASK-APGD and SW20, on which the "
                                 "worst case over every attack is reported (Tables 1 and 3)")


class Experiments(Section):
    """The paper's figures and appendix tables (cosine unless stated)."""
    table_size: Count = doc("images of the appendix tables (Tables 6 to 9, with their verdicts): the first N of "
                            "the evaluation set")
    subset_size: Count = doc("images of the curves (Figures 1, 4, 5) and of ASK-Atk's extra random starts: the "
                             "first N of the evaluation set")
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
    """params.yaml: the three switches."""
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
            fail("\n".join(problems))
        return self
