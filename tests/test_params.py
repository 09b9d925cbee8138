import shutil
from pathlib import Path

import pytest
import yaml

from askknn.params import available_presets, load_params, preset_config
from askknn.shared import ParamError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    shutil.copytree(ROOT / "presets", tmp_path / "presets")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def edit(project, top=None, **sections):
    """Change params.yaml (`top`) or keys of the default preset (`section={key: value}`)."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params.update(top or {})
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    if not sections:
        return
    path = project / "presets" / f"{params['preset']}.yaml"
    preset = yaml.safe_load(path.read_text()) or {}
    for section, values in sections.items():
        preset.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(preset))


def test_every_shipped_preset_is_valid(project):
    assert available_presets(project) == ["cifar10", "cifar10_cpu", "cifar10_fast", "fashion_mnist", "imagenette",
                                          "tiny"]
    for preset in available_presets(project):
        edit(project, {"preset": preset})
        assert load_params(project)["preset"] == preset


@pytest.mark.parametrize("top, sections, message", [
    ({"preset": "mnist"}, {},
     "preset = 'mnist' is unknown; allowed: cifar10, cifar10_cpu, cifar10_fast, fashion_mnist, imagenette, tiny"),
    ({"eps": -1}, {}, r"eps = -1 must be an integer in \[0, 255\]"),
    ({"eps": 256}, {}, r"eps = 256 must be an integer in \[0, 255\]"),
    ({"eps": "8/255"}, {}, "eps = '8/255' must be an integer"),
    ({"seeds": []}, {}, "seeds is empty"),
    ({"seeds": [0, 1, 0]}, {}, r"seeds = \[0, 1, 0\] repeats a value"),
    ({"seeds": [0, -1]}, {}, r"seeds = -1 must be an integer in \[0, 4294967295\]"),
    ({}, {"model": {"name": "vgg19"}}, "model.name = 'vgg19' is not allowed; choose one of: resnet18, small_cnn"),
    ({}, {"dknn": {"layers": ["conv3", "fc"]}}, "dknn.layers lists 'fc', a layer the model does not have"),
    ({}, {"dknn": {"metrics": ["cosine", "manhattan"]}},
     "dknn.metrics = 'manhattan' is not allowed; choose one of: cosine, l2"),
    ({}, {"dknn": {"k": 501}}, "dknn.k = 501 is larger than a class's share of the bank"),
    ({}, {"data": {"dataset": "svhn"}}, "data.dataset = 'svhn' is not allowed"),
    ({}, {"data": {"bank_size": 5001}}, "must be a multiple of the 10 classes"),
    ({}, {"data": {"dataset": "imagenette", "source": "download", "train_size": None, "val_size": 500,
                   "bank_size": 8500, "eval_size": 800}},
     "data.val_size / 10 \\+ data.bank_size / 10 = 900 images of every class, but the smallest class of the "
     "imagenette training set has 858"),
    ({}, {"train": {"eps": 300}}, "train.eps = 300"),
    ({}, {"attacks": {"steps": -1}}, r"attacks.steps = -1 must be an integer in \[0"),
    ({}, {"experiments": {"k_values": [1, 600]}}, "experiments.k_values has 600, larger than a class's share"),
    ({}, {"attacks": {"dknn_atk": {"guides": 4}}},
     "attacks.dknn_atk.guides = 4 is smaller than dknn.k = 5: DkNN-Atk needs at least K guides; set it to k or to 5"),
    ({}, {"attacks": {"sw20": {"guides_grid": [3, 600]}}},
     "attacks.sw20.guides_grid has 600, larger than a class's share"),
    ({}, {"attacks": {"advknn": {"ce_share_grid": [0.3, 20]}}}, r"attacks.advknn.ce_share_grid.* \[0, 1\]"),
    ({}, {"attacks": {"advknn": {"ce_share_grid": []}}}, "attacks.advknn.ce_share_grid"),
    ({}, {"attacks": {"dknn_atk": {"steepness_grid": {"cosine": [0.0, -1], "l2": [0.0]}}}},
     "attacks.dknn_atk.steepness_grid.cosine has -1; every value must be a number >= 0"),
    ({}, {"attacks": {"ask": {"tau_grid": {"cosine": [0.0], "l2": [1.0]}}}},
     "attacks.ask.tau_grid.cosine has 0.0; every value must be a positive number"),
    ({}, {"experiments": {"eps_sweep": [0, 300]}}, "experiments.eps_sweep = 300"),
    ({}, {"experiments": {"sweep_layers": ["conv5"]}}, "experiments.sweep_layers lists 'conv5'"),
    ({}, {"experiments": {"tau_values": [0.1, -1]}}, "experiments.tau_values has -1"),
    ({}, {"model": {"width": 0.5}}, "model.width = 0.5 but model 'small_cnn' has no width option"),
    ({}, {"model": {"width": 0}}, "model.width = 0 must be"),
    ({}, {"attacks": {"worst_case_size": 5000}}, "attacks.worst_case_size = 5000 is larger than data.eval_size"),
    ({}, {"experiments": {"table_size": 900}}, "experiments.table_size = 900 is larger than data.eval_size"),
    ({}, {"train": {"cuda_graphs": True, "schedule": "onecycle"}},
     "train.cuda_graphs = true needs train.schedule: step"),
    ({}, {"attacks": {"ask_apgd": {"steps": 10, "restarts": 4, "restart": "always"}}},
     "attacks.ask_apgd.restart = 'always' is not allowed"),
])
def test_bad_parameters_fail_before_any_work(project, top, sections, message):
    edit(project, top, **sections)
    with pytest.raises(ParamError, match=message):
        load_params(project)


def test_the_schema_declares_every_training_method_and_passes_every_preset_value_through(project):
    from askknn import schema
    from askknn.registry import METHODS

    assert set(schema.Methods.model_fields) == set(METHODS)
    for preset in available_presets(project):   # nothing dropped by the schema
        raw = preset_config(preset, project)
        edit(project, {"preset": preset})
        loaded = load_params(project)
        assert {section: loaded[section] for section in raw} == raw   # same keys, same values


def flat(tree: dict, prefix: tuple = ()) -> dict:
    """A nested mapping's leaves (a list is a leaf) by their key path."""
    out = {}
    for key, value in tree.items():
        out.update(flat(value, prefix + (key,)) if isinstance(value, dict) and value else {prefix + (key,): value})
    return out


def test_every_preset_holds_only_what_differs_from_the_base(project):
    base = flat(yaml.safe_load((project / "presets" / "base.yaml").read_text()))
    for preset in available_presets(project):
        own = flat(yaml.safe_load((project / "presets" / f"{preset}.yaml").read_text()) or {})
        assert set(own) <= set(base), f"{preset}: keys the base does not have: {set(own) - set(base)}"
        assert not [k for k, v in own.items() if base[k] == v], f"{preset} repeats base.yaml's values"


def test_a_preset_overrides_the_base_key_by_key(project):
    path = project / "presets" / "cifar10_cpu.yaml"
    path.write_text(path.read_text() + "dknn:\n  k: 7\n")
    edit(project, {"preset": "cifar10_cpu"})
    params = load_params(project)
    base = yaml.safe_load((project / "presets" / "base.yaml").read_text())
    assert params["dknn"]["k"] == 7 and params["dknn"]["layers"] == base["dknn"]["layers"]   # merged, not replaced
    assert params["model"]["width"] == 0.25 and params["train"]["lr"] == base["train"]["lr"]
    assert "base" not in available_presets(project)
