"""The report's paired verdicts, Holm-corrected within each family (written to metrics/verdicts.json)."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

from askknn.stats import claim_verdict, equivalence_verdict, holm, pooled_claim_verdict, unpack  # noqa: E402


class Verdicts:
    """Collects the paired verdicts of the report (written to metrics/verdicts.json).

    A directional verdict is final only when its whole family is known: Holm's correction runs
    within each family (a table, or a group of claims: the part of `source` before any ';'). So
    `claim` and `tally` return placeholders that `finalize` replaces in the finished text."""

    def __init__(self):
        self.records: list[dict] = []
        self.tallies: list[list[int]] = []

    def claim(self, what: str, source: str, a: str, b: str, claim: str) -> str:
        """Test accuracy(a) `claim` (lower | higher) than accuracy(b); a, b: packed outcomes."""
        a_ok, b_ok = unpack(a), unpack(b)
        n = min(len(a_ok), len(b_ok))   # a subset experiment pairs with the first n images
        v = claim_verdict(a_ok[:n], b_ok[:n], claim)
        self.records.append({**v, "direction": v["claim"], "claim": what, "source": source,
                             "family": source.split(";")[0]})
        return f"\x00claim {len(self.records) - 1}\x00"

    def pooled_claim(self, what: str, source: str, pairs: list[tuple[str, str]], claim: str) -> str:
        """Test accuracy(a) `claim` (lower | higher) than accuracy(b) over training seeds; pairs: one
        (a, b) of packed outcomes per seed (`pooled_claim_verdict`)."""
        v = pooled_claim_verdict([(unpack(a), unpack(b)) for a, b in pairs], claim)
        self.records.append({**v, "direction": v["claim"], "claim": what, "source": source,
                             "family": source.split(";")[0]})
        return f"\x00claim {len(self.records) - 1}\x00"

    def within(self, what: str, source: str, a: str, b: str, margin: float) -> str:
        a_ok, b_ok = unpack(a), unpack(b)
        n = min(len(a_ok), len(b_ok))
        v = equivalence_verdict(a_ok[:n], b_ok[:n], margin)
        self.records.append({**v, "claim": what, "source": source})
        return (f"- {what} ({source}): **{v['verdict']}**; difference {100 * v['difference']:+.1f} points, "
                f"Tango's score 95% interval [{100 * v['ci95'][0]:+.1f}, {100 * v['ci95'][1]:+.1f}], "
                f"n = {v['n']}\n")

    def tally(self, first: int = 0, records: list[dict] | None = None) -> str:
        chosen = self.records[first:] if records is None else records
        self.tallies.append([next(i for i, r in enumerate(self.records) if r is c) for c in chosen])
        return f"\x00tally {len(self.tallies) - 1}\x00"

    def finalize(self, text: str) -> str:
        """Holm within each family, then the placeholders of `text` replaced by the final lines."""
        families: dict[str, list[int]] = {}
        for i, r in enumerate(self.records):
            if "direction" in r:
                families.setdefault(r["family"], []).append(i)
        for members in families.values():
            adjusted = holm([{**self.records[i], "claim": self.records[i]["direction"]} for i in members])
            for i, v in zip(members, adjusted):
                self.records[i].update(p_holm=v["p_holm"], family_size=v["family_size"], verdict=v["verdict"])
        lines = {"claim": self.claim_line, "tally": self.tally_line}
        return re.sub("\x00(claim|tally) (\\d+)\x00", lambda m: lines[m[1]](int(m[2])), text)

    def claim_line(self, i: int) -> str:
        v = self.records[i]
        if "seeds" in v:
            seed_test = "" if v["p_seeds"] is None else \
                f", t-test over seeds p = {v['p_seeds']:.2g}, the larger p = {v['p_value']:.2g}"
            test = (f"mean difference {100 * v['difference']:+.1f} points (per seed: "
                    + " / ".join(f"{100 * d:+.1f}" for d in v["seed_differences"])
                    + f"), per-image sign test p = {v['p_images']:.2g} ({v['images_favouring'][0]} images "
                    f"against {v['images_favouring'][1]}){seed_test}")
            n = f"{v['seeds']} seed{'s' if v['seeds'] > 1 else ''}, n = {v['n']} images each"
        else:
            test = f"difference {100 * v['difference']:+.1f} points, exact McNemar p = {v['p_value']:.2g}"
            n = f"n = {v['n']}"
        return (f"- {v['claim']} ({v['source']}): **{v['verdict']}**; {test}, Holm-adjusted p = {v['p_holm']:.2g} "
                f"({v['family_size']} tests in the family), {n}\n")

    def tally_line(self, k: int) -> str:
        words = [self.records[i]["verdict"].split(" at n")[0] for i in self.tallies[k]]
        return (f"\nOf these {len(words)} tests: {words.count('holds')} hold, {words.count('reversed')} reversed, "
                f"{words.count('not resolved')} not resolved.\n")
