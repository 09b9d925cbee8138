"""Stage report: reports/results.md and reports/figures/*.png from the metrics JSON."""
from askknn.io import write_text
from askknn.params import load_params
from askknn.report import build_report
from askknn.runtime import REPORTS


def main() -> None:
    write_text(REPORTS / "results.md", build_report(load_params()))


if __name__ == "__main__":
    main()
