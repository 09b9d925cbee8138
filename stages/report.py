"""Stage report: reports/results.md and reports/figures/*.png from the metrics and outcomes, and
metrics/verdicts.json (every paired verdict with its test statistics)."""
from askknn.io import write_json, write_text
from askknn.params import load_params
from askknn.report import build_report
from askknn.runtime import METRICS_DIR, REPORTS, run_stage


def main() -> None:
    text, verdicts = build_report(load_params())
    write_text(REPORTS / "results.md", text)
    write_json(METRICS_DIR / "verdicts.json", {"verdicts": verdicts})


if __name__ == "__main__":
    run_stage(main)
