"""Every claim the report tests, as data: what it says, where it comes from, and in which direction
the accuracies must differ. A section finds its claims here and pairs the columns they name; a new
claim is a new entry. The part of `source` before ';' is the claim's Holm family."""
from __future__ import annotations

from dataclasses import dataclass

from askknn.report.common import baselines


@dataclass(frozen=True)
class Claim:
    """Accuracy under (or of) `a` is `direction` than under (or of) `b`: lower means `a` is the
    stronger attack, higher the more robust model, within: the two equal to within `margin` (an
    equivalence claim); `text` is completed with the cell's names."""
    text: str
    source: str
    a: str = ""
    b: str = ""
    direction: str = "lower"
    margin: float | None = None

    def what(self, **names) -> str:
        return self.text.format(**names)


def table1() -> list[Claim]:
    """ASK-Atk against each of the paper's baselines, first start, every evaluation image."""
    return [Claim("ASK-Atk lower than {b}, {layers}, {metric}", "paper Table 1: ASK-Atk is the strongest attack",
                  "ask", b) for b in baselines()]


# Beyond the paper, on the worst case's images: the stronger attack (at its own budget of passes and
# at ASK-Atk's), and the published successor of DkNN-Atk against it.
STRONGER = Claim("{a} lower than ASK-Atk, {layers}, {metric}", "beyond the paper: a stronger evaluation",
                 "ask_apgd", "ask")
SW20 = Claim("SW20 lower than DkNN-Atk, {layers}, {metric}", "Sitawarin & Wagner 2020: SW20 beats their 2019 attack",
             "sw20", "dknn_atk")
STRONGER_ON_DEFENSES = Claim("{model}: ASK-APGD lower than ASK-Atk, {layers}",
                             "beyond the paper: a stronger evaluation of the defenses", "ask_apgd", "ask")

# The appendix's studies of ASK-Atk.
TABLE6 = Claim("targeted within 3 points of non-targeted, {layers}", "paper Table 6", "targeted", "ask",
               "within", margin=0.03)


def table7() -> list[Claim]:
    """ASK-Atk with random negatives against each of the paper's baselines."""
    return [Claim("random-X- ASK-Atk lower than {b}, {layers}", "paper Table 7", "random_negatives", b)
            for b in baselines()]


TABLE8 = Claim("DkNN on {layer}: attacking {layer} lower than attacking {other}", "paper Table 8",
               "the DkNN's layer", "another layer")
TABLE9 = Claim("K+ = {k_pos}: K- = {default} lower than K- = {smallest}",
               "paper Table 9: more negatives per class give a stronger attack", "the default K-", "the smallest K-")

# The training methods (Tables 3 and 5, pooled over training seeds): accuracy of `a` higher than `b`'s.
TRAINING_METHODS = [
    Claim("{a} above {b}, {row}", "paper: ASK-Def is more robust than AT", "askdef", "at", "higher"),
    Claim("{a} above {b}, {row}", "paper: ASK-Def is more robust than AT+SNN", "askdef", "atsnn", "higher"),
    Claim("{a} above {b}, {row}", "AT+SNN against AT, on its own line: not a claim of the paper's text", "atsnn", "at",
          "higher"),
    Claim("{a} above {b}, {row}", "control: the ASK term, not G2's larger budget", "askdef", "at_wide", "higher"),
]


def every() -> list[Claim]:
    """Every claim of the report (the registry's baselines as they are now)."""
    return [*table1(), STRONGER, SW20, STRONGER_ON_DEFENSES, TABLE6, *table7(), TABLE8, TABLE9, *TRAINING_METHODS]
