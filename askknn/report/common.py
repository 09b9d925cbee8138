"""The report's shared pieces: the registry's names, number formatting, figure writing and the
readers of metrics/ and outcomes/."""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (re-exported: the sections draw with it, on Agg)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from askknn import paper, registry  # noqa: E402
from askknn.io import atomic_path, read_json  # noqa: E402
from askknn.runtime import METRICS_DIR, OUTCOMES, REPORTS, layer_set_name, model_name  # noqa: E402
from askknn.stats import pack, proportion, seed_mean, unpack  # noqa: E402

METHOD_NAMES = {m.name: m.label for m in registry.METHODS.values()}


class AttackLabels(Mapping):
    """The report's name of every registered attack, read from the registry when asked (so an attack
    registered after this module's import has its column too)."""

    def __getitem__(self, name: str) -> str:
        return registry.ATTACKS[name].label

    def __iter__(self):
        return iter(registry.ATTACKS)

    def __len__(self) -> int:
        return len(registry.ATTACKS)


ATTACK_NAMES = AttackLabels()


def suite() -> tuple[str, ...]:
    """Every attack: the worst case is over all of them."""
    return tuple(registry.ATTACKS)


def paper_attacks() -> tuple[str, ...]:
    return tuple(registry.names(lambda a: a.paper))


def baselines() -> tuple[str, ...]:
    """The paper's attacks against which ASK-Atk is compared."""
    return tuple(a for a in paper_attacks() if a != "ask")


def others() -> tuple[str, ...]:
    """Attacks beyond the paper's that run on every evaluation image."""
    return tuple(registry.names(lambda a: not a.paper and a.images == "all"))


def subset() -> tuple[str, ...]:
    """Attacks beyond the paper's that run on the worst case's images only."""
    return tuple(registry.names(lambda a: a.images == "worst_case"))


def swept() -> tuple[str, ...]:
    """Stage eps_sweep's attacks (Figure 1)."""
    return tuple(registry.names(lambda a: a.swept))


GOAL_POINTS = 5   # the stronger attack should leave the AT model's DkNN this much less accurate than ASK-Atk
FIGURES = REPORTS / "figures"
PLOT_DATA = REPORTS / "plots"


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def with_ci(p: dict) -> str:
    """An accuracy as 'acc [low, high]' in percent (its n is stated with the table)."""
    return f"{pct(p['accuracy'])} [{pct(p['ci95'][0])}, {pct(p['ci95'][1])}]"


def rate_with_ci(rate: float, n: int) -> str:
    """A rate stored as a fraction of n images, with its Wilson interval; a dash for no image (a rate
    over the clean-correct images of a DkNN that got none right)."""
    if n == 0:
        return "- (n = 0)"
    k = round(rate * n)
    return with_ci(proportion(np.arange(n) < k))


def first_images(n: int, evaluated: int) -> str:
    """'the first n images' of the evaluated ones, or 'all N images' when n covers them."""
    return f"all {evaluated} images" if n >= evaluated else f"the first {n} images"


def listing(attacks) -> str:
    """The attacks' names as 'A, B and C'."""
    labels = [ATTACK_NAMES[a] for a in attacks]
    return " and ".join(filter(None, [", ".join(labels[:-1]), labels[-1]]))


def markdown(df: pd.DataFrame) -> str:
    return df.to_markdown(disable_numparse=True) + "\n"


def layer_names(params) -> list[str]:
    return [layer_set_name(ls) for ls in params["dknn"]["layer_sets"]]


def paper_cell(values, name: str) -> str:
    """The paper's number for a layer-set row, or '-' where the paper has none."""
    return f"{values[paper.LAYER_SETS.index(name)]:.1f}" if name in paper.LAYER_SETS else "-"


def n_of(cells) -> int:
    return next(iter(cells.values()))["n"]


def save_figure(fig, name: str) -> str:
    path = FIGURES / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f"![{name}](figures/{name}.png)\n"


def save_points(name: str, df: pd.DataFrame) -> None:
    """A figure's numbers as CSV, for `dvc plots` (declared in dvc.yaml)."""
    with atomic_path(PLOT_DATA / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False)


# ------------------------------------------------------------------ inputs
def curve(ax, x, cells: list[dict], label: str) -> None:
    """Accuracies (percent) against x with their 95% Wilson band."""
    ax.plot(x, [100 * c["accuracy"] for c in cells], marker="o", label=label)
    ax.fill_between(x, [100 * c["ci95"][0] for c in cells], [100 * c["ci95"][1] for c in cells], alpha=0.2)


def metrics(kind: str, name: str) -> dict:
    return read_json(METRICS_DIR / kind / f"{name}.json")


def outcomes(kind: str, name: str) -> dict:
    """The per-image robust outcomes of a stage (1 = correct clean and under attack)."""
    return read_json(OUTCOMES / kind / f"{name}.json")["robust"]


def clean_correct(cell: dict) -> int:
    """How many images the clean DkNN got right: the denominator of a success rate."""
    return round(cell["clean"]["accuracy"] * cell["clean"]["n"])


def trained_runs(params, method: str, part: str) -> dict[int, tuple[dict, dict]]:
    """Per training seed, the cells and the robust outcomes of evaluate_trained's `part` (ask: Table
    3, pgd: Table 5) for one method."""
    return {s: (metrics("trained", model_name(method, s))[part], outcomes("trained", model_name(method, s))[part])
            for s in params["seeds"]}


def with_seed_ci(m: dict) -> str:
    """A mean over seeds as 'mean [low, high]' (t-interval over seeds), or the mean alone for one seed."""
    if m["ci95"] is None:
        return pct(m["accuracy"])
    return f"{pct(m['accuracy'])} [{pct(m['ci95'][0])}, {pct(m['ci95'][1])}]"


def per_seed_table(params, runs: dict, keys: list[str], label) -> pd.DataFrame:
    """Rows: each method at each seed (Wilson interval) and, with several seeds, its mean over them
    (t-interval over seeds); columns: `keys` (layer sets or budgets) labelled by `label`."""
    rows = {}
    for m, by_seed in runs.items():
        for s, (cells, _) in by_seed.items():
            rows[f"{METHOD_NAMES[m]}, seed {s}"] = {label(k): with_ci(cells[k]) for k in keys}
        if len(by_seed) > 1:   # one seed's mean is that seed's row again
            rows[f"{METHOD_NAMES[m]}, mean of {len(by_seed)} seeds"] = {
                label(k): with_seed_ci(seed_mean([cells[k]["accuracy"] for cells, _ in by_seed.values()]))
                for k in keys}
    return pd.DataFrame(rows).T


def worst_of(outcome_strings, n: int) -> np.ndarray:
    """Per image of the first n: robust (1) only if every attack failed on it."""
    return np.logical_and.reduce([unpack(o)[:n] for o in outcome_strings])


def table1_worst_case(outs: dict, name: str, n: int) -> str:
    """Packed worst case over the whole suite, for one layer set of Table 1 (first n images)."""
    return pack(worst_of([outs[a][name]["start_0"] for a in suite()], n))


def models_of(params):
    """(label, method, seed) of every trained model: every method under every training seed."""
    return [(f"{METHOD_NAMES[m]}, seed {s}", m, s) for m in METHOD_NAMES for s in params["seeds"]]


def appendix(name: str) -> tuple[dict, dict]:
    return metrics("ask_appendix", name)["cells"], outcomes("ask_appendix", name)
