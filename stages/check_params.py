"""Stage check_params: validate params.yaml and the selected preset (askknn/schema.py) before any
other stage, and write metrics/preset.json (the preset's name only, so it changes only when the
preset does). Every stage depends on it through prepare, so `dvc exp run -S preset=nope` or a typo'd
key stops here with a message naming the problem, before DVC removes any output of a later stage."""
from askknn.io import write_json
from askknn.params import load_params
from askknn.runtime import METRICS, run_stage


def main() -> None:
    write_json(METRICS / "preset.json", {"preset": load_params()["preset"]})


if __name__ == "__main__":
    run_stage(main)
