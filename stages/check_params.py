"""Stage check_params: validate params.yaml and the selected preset (askknn/config/) before any other
stage; write metrics/preset.json (the preset's name only, so it changes only when the preset does)
and resolved_params.yaml (the preset merged over presets/base.yaml: the file whose keys every
stage's `params` in dvc.yaml track, so a stage re-runs only when a value it reads changes, whichever
file set it). Every stage depends on it, so `dvc exp run -S preset=nope` or a typo'd key stops here
with a message naming the problem, before DVC removes any output of a later stage."""
import yaml

from askknn.io import write_json, write_text
from askknn.params import load_params
from askknn.runtime import METRICS_DIR, RESOLVED, run_stage

SWITCHES = ("preset", "eps", "seeds")   # params.yaml's own keys, tracked there


def main() -> None:
    params = load_params()
    write_json(METRICS_DIR / "preset.json", {"preset": params["preset"]})
    config = {key: value for key, value in params.items() if key not in SWITCHES}
    write_text(RESOLVED, f"# Written by stage check_params: presets/{params['preset']}.yaml over presets/base.yaml. "
               "Do not edit: edit the presets.\n" + yaml.safe_dump(config, sort_keys=False))


if __name__ == "__main__":
    run_stage(main)
