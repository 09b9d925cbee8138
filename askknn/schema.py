"""The parameters, declared: every key of `params.yaml` and `presets/<name>.yaml`, its type, its range
and what it means. The declarations live in askknn.config (values, sections, rules, explain); this
module gathers their public names, the one place the rest of the code imports them from.

`params.yaml` holds the three switches (`preset`, `eps`, `seeds`); a preset holds the seven sections `data`,
`model`, `train`, `dknn`, `methods`, `attacks`, `experiments`, every key of them required. Budgets
(`eps`, `train.eps`, ...) are integers in units of 1/255; step sizes of training attacks are in 1/255
too. Unknown keys are rejected with the nearest valid name, missing keys are named with their
section, and the cross-field rules (askknn.config.rules: split sizes against the classes and the
dataset, K against a class's share of the bank, ...) run before any work.

`python -m askknn.schema` prints every key with its description.
"""
from askknn.config.explain import ALIASES, RENAMED, check, describe, explain
from askknn.config.rules import cross_field_problems
from askknn.config.sections import (AT, ATSNN, SW20, AdvKnn, Ask, AskAPGD, AskDef, Attacks, ATWide, Data, DkNN,
                                    DkNNAtk, Experiments, Methods, Model, PerMetric, Preset, Section, Switches,
                                    Train, doc)
from askknn.config.values import (BIG, KEY, Bool, Count, Counts, Eps, EpsList, Layer, Layers, Metric, NonNegatives,
                                  Positive, Positives, Seed, Seeds, Steps, Str, boolean, distinct, guides_value,
                                  integer, layer, nonempty, number, one_of, optional_count, positive, text)

__all__ = [
    # values
    "KEY", "BIG", "integer", "number", "positive", "one_of", "text", "boolean", "layer", "nonempty", "distinct",
    "guides_value", "optional_count", "Str", "Bool", "Eps", "Count", "Steps", "Seed", "Positive", "Layer",
    "Metric", "Layers", "Positives", "NonNegatives", "Counts", "EpsList", "Seeds",
    # sections
    "Section", "doc", "Data", "Model", "Train", "DkNN", "AT", "ATWide", "AskDef", "ATSNN", "Methods", "PerMetric",
    "Ask", "DkNNAtk", "AdvKnn", "AskAPGD", "SW20", "Attacks", "Experiments", "Switches", "Preset",
    # rules
    "cross_field_problems",
    # explain
    "RENAMED", "ALIASES", "explain", "check", "describe",
]


if __name__ == "__main__":
    print("params.yaml:")
    print("\n".join("  " + line for line in describe(Switches)))
    print("presets/<name>.yaml:")
    print("\n".join("  " + line for line in describe(Preset)))
