"""Section: The tuned hyper-parameters, with their place on the grid."""
from __future__ import annotations

import pandas as pd

from askknn.report.common import (
    ATTACK_NAMES,
    METHOD_NAMES,
    markdown,
    metrics,
)
from askknn.runtime import layer_set_name
from askknn.shared import majority


# Where a grid's edge meets a limit of the attack, what lies past it (the lead says how close it is)
OMEGA_BOUND = " (near omega's bound: 0 or 1 attacks one layer alone)"
LIMITS = {("omega", "below"): OMEGA_BOUND, ("omega", "above"): OMEGA_BOUND,
          ("steepness", "below"): " (towards 0, the flat sigmoid's limit: a flatter sigmoid only rescales the "
                                  "gradient, which sign steps ignore; list 0 in the grid to try the limit itself)",
          ("ce_share", "below"): " (towards 0, the KL term alone)",
          ("ce_share", "above"): " (towards 1, the CE term alone)"}


def range_ends(params) -> dict[tuple[str, float], str]:
    """The values that end a hyper-parameter's range: a choice there is on its grid's edge with
    nothing beyond. DkNN-Atk's steepness 0 is its limit; SW20's fewest guides per class is the one its
    builder raises every grid value to."""
    return {("ce_share", 0.0): "the KL term alone", ("ce_share", 1.0): "the CE term alone",
            ("steepness", 0.0): "the flat sigmoid's limit, the summed distances to the guides",
            ("half", majority(params["dknn"]["k"])): "a majority of K; fewer guides cannot outvote the true class"}


def edge_side(cell: dict, key: str) -> str:
    values = sorted({entry[key] for entry in cell["grid"]})
    return "below" if cell["chosen"][key] == values[0] else "above"


def open_edges(cell: dict, ends: dict) -> list[str]:
    """The hyper-parameters on their grid's edge with room beyond it (not at the end of their range)."""
    return [key for key in cell["on_grid_edge"] if (key, cell["chosen"][key]) not in ends]


def edge_direction(cell: dict, ends: dict) -> str:
    """Per hyper-parameter on its grid's edge, the direction in which a stronger value may lie, or
    the end of its range (`ends`, from range_ends) that it has reached."""
    words = []
    for key in cell["on_grid_edge"]:
        value = cell["chosen"][key]
        if (key, value) in ends:
            words.append(f"{key}: at the end of its range ({value:g}: {ends[key, value]}), nothing lies "
                         f"{edge_side(cell, key)}")
        else:
            words.append(f"{key}: {edge_side(cell, key)} the grid{LIMITS.get((key, edge_side(cell, key)), '')}")
    return ", ".join(words) or "no"


def spread(cell: dict) -> float:
    scores = [e["dknn_accuracy"] for e in cell["grid"]]
    return max(scores) - min(scores)


def edge_lead(cell: dict) -> str:
    """Per hyper-parameter on its grid's edge, how many points of DkNN accuracy the chosen value
    leaves below its inward neighbour on the grid (the other hyper-parameters as chosen)."""
    def score(entry: dict) -> float:
        return next(e["dknn_accuracy"] for e in cell["grid"] if all(e[k] == v for k, v in entry.items()))
    leads = []
    for key in cell["on_grid_edge"]:
        values = sorted({entry[key] for entry in cell["grid"]})
        inward = values[1] if cell["chosen"][key] == values[0] else values[-2]
        leads.append(f"{key}: {100 * (score({**cell['chosen'], key: inward}) - score(cell['chosen'])):.1f}")
    return ", ".join(leads) or "-"


def tuning(params, verdicts) -> str:
    rows, on_edge, ends = [], 0, range_ends(params)
    for method, label in METHOD_NAMES.items():
        for c in metrics("tuning", method)["cells"]:
            on_edge += bool(open_edges(c, ends))
            rows.append({"model": label, "attack": ATTACK_NAMES[c["attack"]], "layers": layer_set_name(c["layers"]),
                         "metric": c["metric"], "chosen": ", ".join(f"{k} = {v}" for k, v in c["chosen"].items()),
                         "on the grid's edge": edge_direction(c, ends),
                         "lead over the inward value (points)": edge_lead(c),
                         "spread over the grid (points)": f"{100 * spread(c):.1f}", "tuning images": c["images"]})
    n = rows[0]["tuning images"] if rows else 0
    return ("## Tuned hyper-parameters (held-out training images; lowest DkNN accuracy wins)\n\n"
            f"{on_edge} of {len(rows)} choices lie on an edge of their grid with room beyond it (not at the end of "
            "the hyper-parameter's range): a stronger value may lie beyond it, in the direction given, so a "
            "comparison with that attack may favour the other one. The lead over the inward value says by how "
            "much the edge value beat its neighbour on the grid, and the spread how far "
            f"apart the grid's best and worst entries are: on {n} tuning images a difference of a point or two "
            "is within the tuning set's noise, and there an edge choice says little. The tuner's curve of every "
            "cell is in `metrics/tuning/<method>.json`.\n\n"
            + markdown(pd.DataFrame(rows).set_index("model")))
