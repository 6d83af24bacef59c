"""Config loading: required names, typos, defaults, and the shipped configs' data checks."""

import subprocess
import sys

import pytest

import geoseg.models
from geoseg.classes import CLASSES
from geoseg.config import (
    SUPERVISED_DEFAULTS,
    SUPERVISED_REQUIRED,
    load_config,
    parse_overrides,
)
from geoseg.datasets.combine import CombineSettings, build_combined_dataset, plan_combined_dataset
from geoseg.datasets.synthetic import write_openearthmap_release, write_target_dataset
from geoseg.errors import ConfigError, DataError
from geoseg.evaluation.ablation import LEVERS as ABLATION_LEVERS
from geoseg.losses import TruncatedCrossEntropyLoss
from geoseg.training.kd import KD_DEFAULTS, KD_REQUIRED

from conftest import REPO_ROOT, tiny_ftunetformer


def write(tmp_path, text, name="cfg.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def complete_config(**overrides) -> str:
    values = {name: "None" for name in SUPERVISED_REQUIRED}
    values["run_name"] = "'tests/run'"
    values.update(overrides)
    return "\n".join(f"{name} = {value}" for name, value in values.items())


def test_all_missing_names_in_one_error(tmp_path):
    path = write(tmp_path, "num_classes = 6\nmax_epochs = 3\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    for name in SUPERVISED_REQUIRED[1:]:
        assert name in message
    assert "'max_epochs' -> did you mean 'max_epoch'?" in message


def test_typo_in_an_optional_name_is_rejected(tmp_path):
    path = write(tmp_path, complete_config() + "\npretrain_ckpt_path = 'x.ckpt'\n")
    with pytest.raises(
        ConfigError, match="unknown name 'pretrain_ckpt_path'; did you mean 'pretrained_ckpt_path'"
    ):
        load_config(path)


def test_defaults_are_filled_and_helpers_pass(tmp_path):
    text = complete_config(max_epoch="7") + "\nimport math\nbatch_size = 4\nnum_class_helper = 1\n"
    config = load_config(write(tmp_path, text))
    assert config.max_epoch == 7 and config.batch_size == 4
    assert config.precision is None and config.devices == SUPERVISED_DEFAULTS["devices"]
    assert config.config_path.endswith("cfg.py")
    # the class scheme and the monitored metric are defaults; the outputs follow from run_name
    assert config.classes == CLASSES and config.num_classes == 6 and config.ignore_index == 255
    assert (config.monitor, config.monitor_mode) == ("val_mIoU", "max")
    assert config.weights_path == "model_weights/tests/run"
    assert (config.weights_name, config.log_name) == ("run-best", "tests/run")


def test_outputs_set_in_the_config_win_over_run_name(tmp_path):
    config = load_config(write(tmp_path, complete_config(weights_path="'elsewhere'")))
    assert config.weights_path == "elsewhere" and config.log_name == "tests/run"
    overridden = load_config(write(tmp_path, complete_config()), overrides={"run_name": "a/b"})
    assert (overridden.weights_path, overridden.log_name) == ("model_weights/a/b", "a/b")
    with pytest.raises(ConfigError, match="missing required names: weights_path, weights_name"):
        load_config(write(tmp_path, complete_config(run_name="None")))
    with pytest.raises(ConfigError, match="num_classes = 5 but classes names 6"):
        load_config(write(tmp_path, complete_config(num_classes="5")))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.py: config file not found"):
        load_config(tmp_path / "nope.py")


def test_teacher_config_without_data_names_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ here
    with pytest.raises(DataError, match=r"data/biodiversity/Train/images_png: folder not found"):
        load_config(REPO_ROOT / "config" / "biodiversity" / "teacher.py")


def test_train_supervision_cli_without_data_exits_with_the_layout(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train_supervision.py"),
            "-c",
            str(REPO_ROOT / "config" / "biodiversity" / "teacher.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "error: data/biodiversity/Train/images_png: folder not found" in result.stderr
    assert "images_png/<stem>.png (RGB, uint8)" in result.stderr
    assert "Traceback" not in result.stderr


FAMILIES = ("segformer", "upernet")  # the other ensemble families' step 1 / step 2 pairs
KD_CONFIGS = (
    "student_target_only.py",
    "step2_finetune_target_kd.py",
    "step2_from_step0.py",
    *(f"{family}_step2_finetune_target_kd.py" for family in FAMILIES),
)
STAGE_CONFIGS = (
    "teacher.py",
    "step0_pretrain_map_labels.py",
    "step1_pretrain_combined.py",
    "step1_from_step0.py",
    *(f"{family}_step1_pretrain_combined.py" for family in FAMILIES),
    *KD_CONFIGS,
)


def stage_names(name: str) -> tuple:
    """(required, defaults): the names the stage of the config file ``name`` reads."""
    if name in KD_CONFIGS:
        return KD_REQUIRED, KD_DEFAULTS
    return SUPERVISED_REQUIRED, SUPERVISED_DEFAULTS


def write_stage_data(data, map_labels: str) -> tuple:
    """Tiny data in the folder ``data`` as the stage configs read it: the target (biodiversity),
    its combination with a tiny OpenEarthMap release (biodiversity_combined) and weak labels in
    the target layout (``map_labels``/Train); returns the target and OpenEarthMap roots."""
    target = write_target_dataset(data / "biodiversity", {"Train": 4, "Val": 2}, tile_size=32)
    oem = write_openearthmap_release(data / "OpenEarthMap", tiles_per_region=4, tile_size=48)
    plan = plan_combined_dataset(CombineSettings(target, oem, data / "biodiversity_combined"))
    build_combined_dataset(plan, progress=False)
    write_target_dataset(data / map_labels, {"Train": 4}, tile_size=32, seed=1)
    return target, oem


@pytest.fixture(scope="module")
def demo_data_dir(tmp_path_factory):
    """A working directory holding data/demo as `make demo` writes it, at a tiny size."""
    workdir = tmp_path_factory.mktemp("demo")
    demo = workdir / "data" / "demo"
    target, oem = write_stage_data(demo, "map_labels")
    # the builds of the ablation's step 1 levers (the Makefile's --oem-scale auto and --remap)
    matched = CombineSettings(target, oem, demo / "biodiversity_combined_matched", oem_scale=0.5)
    build_combined_dataset(plan_combined_dataset(matched), progress=False)
    partial_remap = (255, 255, (1, 2), 4, 4, 1, 5, 3, 4)
    partial = CombineSettings(
        target, oem, demo / "biodiversity_combined_partial", remap=partial_remap
    )
    build_combined_dataset(plan_combined_dataset(partial), progress=False)
    return workdir


@pytest.mark.parametrize("name", STAGE_CONFIGS)
def test_every_demo_config_builds(name, demo_data_dir, monkeypatch):
    monkeypatch.chdir(demo_data_dir)
    config = load_config(REPO_ROOT / "config" / "demo" / name, *stage_names(name))
    assert config.net.init_args["num_classes"] == config.num_classes == 6
    assert config.log_name == f"demo/{config.weights_path.rsplit('/', 1)[-1]}"
    assert len(config.train_loader.dataset) > 0
    if name in KD_CONFIGS:
        assert config.teacher_ckpt_path == "model_weights/demo/teacher/last.ckpt"
        assert config.kd_alpha == 0.7 and config.kd_temperature == 3.0
    family = name.split("_")[0]
    if family in FAMILIES:  # its own network; step 2 starts from its own step 1
        assert type(config.net).__name__.lower() == family
        if name in KD_CONFIGS:
            expected = f"model_weights/demo/{family}_pretrain_all/last.ckpt"
            assert config.pretrained_ckpt_path == expected


@pytest.mark.parametrize("name", STAGE_CONFIGS)
def test_every_real_config_names_its_missing_data(name, tmp_path, monkeypatch):
    """Without data the real configs fail on the data folder, before any weights are fetched."""
    monkeypatch.chdir(tmp_path)
    missing = r"data/biodiversity(_combined|_map_labels)?/Train/images_png: folder"
    with pytest.raises(DataError, match=missing):
        load_config(REPO_ROOT / "config" / "biodiversity" / name, *stage_names(name))


@pytest.fixture(scope="module")
def real_data_dir(tmp_path_factory):
    """A working directory holding data/ as the real configs read it, at a tiny size."""
    workdir = tmp_path_factory.mktemp("real")
    write_stage_data(workdir / "data", "biodiversity_map_labels")
    return workdir


@pytest.fixture
def load_stage(demo_data_dir, real_data_dir, monkeypatch):
    """``load_stage(folder, name)``: config/<folder>/<name> loaded with the names its stage reads,
    from a working directory with the data it reads. Its FT-UNetFormers are tiny networks whose
    ``init_args`` are the arguments the config gave (the real students are Swin-Bases that fetch
    their backbone's weights)."""

    def recording_student(**kwargs):
        net = tiny_ftunetformer()
        net.init_args = kwargs
        return net

    monkeypatch.setattr(geoseg.models, "FTUNetFormer", recording_student)

    def load(folder: str, name: str):
        monkeypatch.chdir(demo_data_dir if folder == "demo" else real_data_dir)
        return load_config(REPO_ROOT / "config" / folder / name, *stage_names(name))

    return load


def run_settings(config) -> dict:
    """What a loaded config makes its stage do, to compare configs: its plain settings, the
    network's arguments, the loss's, the data read, the optimiser and the schedule."""
    plain = (bool, int, float, str, tuple, type(None))
    settings = {k: v for k, v in vars(config).items() if isinstance(v, plain)}
    del settings["config_path"]
    settings["net"] = (type(config.net).__name__, config.net.init_args)
    loss_args = {k: v for k, v in vars(config.loss).items() if not k.startswith("_")}
    settings["loss"] = (type(config.loss).__name__, loss_args)
    val = config.val_loader if isinstance(config.val_loader, dict) else {"val": config.val_loader}
    for name, loader in {"train": config.train_loader, **val}.items():
        dataset = loader.dataset
        settings[f"data/{name}"] = (type(dataset).__name__, str(dataset.data_root), len(dataset))
        settings[f"batch_size/{name}"] = loader.batch_size
    settings["optimizer"] = [
        {**{k: v for k, v in group.items() if k != "params"}, "params": len(group["params"])}
        for group in config.optimizer.param_groups
    ]
    settings["lr_scheduler"] = config.lr_scheduler.state_dict()
    return settings


@pytest.mark.parametrize("folder", ["demo", "biodiversity"])
def test_step_0_trains_step_1s_network_on_map_labels_and_validates_on_the_target(
    folder, load_stage
):
    step0 = load_stage(folder, "step0_pretrain_map_labels.py")
    step1 = load_stage(folder, "step1_pretrain_combined.py")
    assert step0.run_name == f"{folder}/student_pretrain_map_labels"
    assert step0.weights_path == f"model_weights/{folder}/student_pretrain_map_labels"
    assert step0.net.init_args == step1.net.init_args  # step 1's network, from the same start
    assert isinstance(step0.loss, TruncatedCrossEntropyLoss)
    assert 0 < step0.loss.drop_fraction < 0.5
    assert 0 < step0.loss.warmup_epochs < step0.max_epoch < step1.max_epoch  # cheaper than step 1
    data = "data/demo" if folder == "demo" else "data"
    weak_labels = "map_labels" if folder == "demo" else "biodiversity_map_labels"
    assert step0.train_loader.dataset.data_root.as_posix() == f"{data}/{weak_labels}"
    assert step0.train_loader.dataset.split == "Train"
    # validation on the target's real labels, as step 1's primary set: val_mIoU means the same
    assert step0.val_loader.dataset.data_root == step1.val_loader["target"].dataset.data_root
    assert step0.val_loader.dataset.split == "Val"
    assert (step0.monitor, step0.monitor_mode) == ("val_mIoU", "max")
    assert step0.train_loader.batch_size == step1.train_loader.batch_size
    assert step0.optimizer.param_groups[0]["lr"] == step1.optimizer.param_groups[0]["lr"]


# The hand-off from step 0: (the variant, the stage it repeats, the run whose last.ckpt it starts
# from)
FROM_STEP0 = (
    ("step1_from_step0.py", "step1_pretrain_combined.py", "step0_pretrain_map_labels.py"),
    ("step2_from_step0.py", "step2_finetune_target_kd.py", "step1_from_step0.py"),
)


@pytest.mark.parametrize("folder", ["demo", "biodiversity"])
@pytest.mark.parametrize(("variant", "stage", "start"), FROM_STEP0)
def test_each_step_0_variant_is_its_stage_started_from_the_run_before(
    folder, variant, stage, start, load_stage
):
    config, stage_config = load_stage(folder, variant), load_stage(folder, stage)
    assert config.pretrained_ckpt_path == f"{load_stage(folder, start).weights_path}/last.ckpt"
    assert config.run_name == f"{stage_config.run_name}_from_step0"
    settings, stage_settings = run_settings(config), run_settings(stage_config)
    differing = {
        k
        for k in settings.keys() | stage_settings.keys()
        if settings.get(k) != stage_settings.get(k)
    }
    outputs_and_start = {
        "run_name",
        "weights_path",
        "weights_name",
        "log_name",
        "pretrained_ckpt_path",
    }
    if folder == "biodiversity" and variant == "step1_from_step0.py":
        # every weight comes from step 0: the backbone's ImageNet weights are not fetched
        assert stage_config.net.init_args == {"pretrained": True}
        assert config.net.init_args == {"pretrained": False}
        outputs_and_start.add("net")
    assert differing == outputs_and_start


def test_command_line_overrides_replace_stage_names(tmp_path):
    path = write(tmp_path, complete_config(weights_path="'a'", log_name="'a'"))
    overrides = parse_overrides(["weights_path=runs/seed_2/x", "deterministic=True", "devices=2"])
    assert overrides == {"weights_path": "runs/seed_2/x", "deterministic": True, "devices": 2}
    config = load_config(path, overrides=overrides)
    assert (config.weights_path, config.deterministic, config.devices) == ("runs/seed_2/x", True, 2)
    assert config.log_name == "a"


def test_overrides_of_names_objects_are_built_from_are_refused(tmp_path):
    path = write(tmp_path, complete_config())
    with pytest.raises(ConfigError, match="cannot override max_epoch from the command line"):
        load_config(path, overrides={"max_epoch": 3})
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        parse_overrides(["weights_path"])


def test_run_name_from_the_command_line_moves_outputs_the_file_set(tmp_path):
    path = write(tmp_path, complete_config(weights_path="'fixed'", log_name="'fixed'"))
    config = load_config(path, overrides={"run_name": "seeds/seed_2/x"})
    assert (config.weights_path, config.log_name) == (
        "model_weights/seeds/seed_2/x",
        "seeds/seed_2/x",
    )
    config = load_config(path, overrides={"run_name": "r", "log_name": "mine"})
    assert (config.weights_path, config.log_name) == ("model_weights/r", "mine")


def test_palette_needs_one_colour_per_class(tmp_path):
    with pytest.raises(ConfigError, match="palette has 2 colours for 6 classes"):
        load_config(write(tmp_path, complete_config(palette="[(0, 0, 0), (1, 1, 1)]")))


def test_shared_blocks_are_imported_relatively_and_run_afresh_for_every_config(tmp_path):
    (tmp_path / "block.py").write_text("token = object()\nmax_epoch = 3\n")
    path = write(tmp_path, complete_config(max_epoch="None") + "\nfrom .block import *\n")
    first, second = load_config(path), load_config(path)
    assert first.max_epoch == second.max_epoch == 3
    assert first.token is not second.token


LEVERS = tuple(folder.removeprefix("student_ft_target_kd_") for folder, _, _ in ABLATION_LEVERS)


# The stage a demo lever config (config/demo/<step>_<lever>.py) changes, by its step: the stage's
# config, the run name of its levers less the lever's name, the settings a lever keeps.
LEVER_STAGES = {
    "step1": (
        "step1_pretrain_combined.py",
        "demo/student_pretrain_",
        ("max_epoch", "pretrained_ckpt_path", "precision", "deterministic"),
    ),
    "step2": (
        "step2_finetune_target_kd.py",
        "demo/student_ft_target_kd_",
        ("pretrained_ckpt_path", "teacher_ckpt_path", "max_epoch", "kd_alpha"),
    ),
}


@pytest.fixture
def load_lever(demo_data_dir, monkeypatch):
    """``load_lever(step, lever)``: (the stage's config, the lever's config), both loaded from the
    demo data folder with the names the stage reads, once asserted that the lever keeps what every
    lever keeps: its run name, the stage's network and the stage's settings in LEVER_STAGES."""
    monkeypatch.chdir(demo_data_dir)
    configs = REPO_ROOT / "config" / "demo"

    def load(step: str, lever: str) -> tuple:
        stage, run_name, unchanged = LEVER_STAGES[step]
        stage_config = load_config(configs / stage, *stage_names(stage))
        config = load_config(configs / f"{step}_{lever}.py", *stage_names(stage))
        assert config.run_name == run_name + lever
        for name in unchanged:
            assert getattr(config, name) == getattr(stage_config, name)
        assert config.net.init_args == stage_config.net.init_args
        return stage_config, config

    return load


def test_the_makefile_trains_the_levers_the_ablation_report_reads():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"LEVERS := {' '.join(LEVERS)}\n" in makefile


@pytest.mark.parametrize("lever", LEVERS)
def test_each_demo_lever_config_changes_step_2_in_its_lever_alone(lever, load_lever):
    step2, config = load_lever("step2", lever)
    changed = {
        "loss": config.loss.ce.class_weights is not None
        or config.loss.lovasz_weight != step2.loss.lovasz_weight,
        "crops": config.train_loader.dataset.rare_class_crop is not None,
        "mix": config.batch_mix is not None,
    }
    expected = {
        "class_weighted": "loss",
        "lovasz": "loss",
        "rare_class_crops": "crops",
        "classmix": "mix",
    }[lever]
    assert [name for name, yes in changed.items() if yes] == [expected]
    if lever == "class_weighted":
        weights = config.loss.ce.class_weights
        present = weights > 0
        assert weights[present].mean().item() == pytest.approx(1.0)
    if lever == "lovasz":
        assert (config.loss.dice_weight, config.loss.lovasz_weight) == (0.0, 1.0)
    if lever == "rare_class_crops":
        assert config.train_loader.dataset.rare_class_crop.p == 0.5
    if lever == "classmix":
        assert type(config.batch_mix).__name__ == "ClassMix" and config.batch_mix.p == 0.5


STEP1_LEVERS = ("balanced", "matched", "partial")


def test_the_makefile_trains_the_step_1_levers_the_ablation_report_reads():
    from geoseg.evaluation.ablation import DOMAIN_LEVERS

    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"STEP1_LEVERS := {' '.join(STEP1_LEVERS)}\n" in makefile
    assert [name for name, *_ in DOMAIN_LEVERS] == [*STEP1_LEVERS, "from_best"]


def test_the_makefile_trains_the_step_0_runs_the_ablation_report_reads():
    from geoseg.evaluation.ablation import ABLATION_CLAIMS, REFERENCE, STEP0_ROWS

    makefile = (REPO_ROOT / "Makefile").read_text()
    folders = [row.folder for row in STEP0_ROWS]
    assert f"STEP0_MODELS := {folders[0]} {folders[1]} \\\n\t{folders[2]}\n" in makefile
    assert "$(map_labels)" in makefile.split("ablation-pipeline:\n")[-1].split("\n\n")[0]
    claims = [(claim.better, claim.worse) for claim in ABLATION_CLAIMS]
    assert (folders[2], REFERENCE) in claims


@pytest.mark.parametrize("lever", STEP1_LEVERS)
def test_each_demo_step_1_lever_config_changes_step_1_in_its_lever_alone(lever, load_lever):
    from geoseg.datasets import DomainBalancedBatchSampler

    step1, config = load_lever("step1", lever)
    dataset = config.train_loader.dataset
    sampler = config.train_loader.batch_sampler
    changed = {
        "balanced": isinstance(sampler, DomainBalancedBatchSampler),
        "matched": dataset.data_root.name == "biodiversity_combined_matched",
        "partial": dataset.data_root.name == "biodiversity_combined_partial"
        and config.loss.label_sets == {6: (1, 2)},
    }
    assert [name for name, yes in changed.items() if yes] == [lever]
    if lever == "balanced":
        assert sampler.target_share == 0.5
    assert not step1.loss.label_sets
    assert step1.train_loader.dataset.data_root.name == "biodiversity_combined"


@pytest.mark.parametrize(
    ("body", "line", "expected"),
    [
        ("x = 1\nmax_epoch = (\n", 2, "SyntaxError: "),
        ("x = 1\ny = 2\nz = 1 / 0\n", 3, "ZeroDivisionError: division by zero"),
        ("x = 1\nnet = undefined_name\n", 2, "NameError: name 'undefined_name' is not defined"),
        ("import json\n\nx = json.loads('{')\n", 3, "JSONDecodeError: Expecting property name"),
    ],
)
def test_a_config_that_fails_to_run_names_its_file_and_line(tmp_path, body, line, expected):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}, line {line}: {expected}")
    assert "\n" not in str(error.value)


def test_a_data_error_raised_by_the_config_keeps_its_message(tmp_path):
    text = "from geoseg.errors import DataError\n\nraise DataError('data/x: folder not found')\n"
    with pytest.raises(DataError) as error:
        load_config(write(tmp_path, text))
    assert str(error.value) == "data/x: folder not found"


@pytest.mark.parametrize(
    ("extra", "stage", "expected"),
    [
        ("max_epochs = 3", "supervised", "max_epochs: no stage reads it; did you mean max_epoch?"),
        (
            "kd_temprature = 2.0",
            "kd",
            "unknown name 'kd_temprature'; did you mean 'kd_temperature'?",
        ),
        (
            "kd_temprature = 2.0",
            "supervised",
            "unknown name 'kd_temprature'; did you mean 'kd_temperature'?",
        ),
    ],
)
def test_a_name_no_stage_reads_beside_a_stage_name_is_a_typo(tmp_path, extra, stage, expected):
    teacher = "\nteacher_ckpt_path = 't.ckpt'" if stage == "kd" else ""
    path = write(tmp_path, complete_config() + teacher + "\n" + extra + "\n")
    stage_names = (KD_REQUIRED, KD_DEFAULTS) if stage == "kd" else ()
    with pytest.raises(ConfigError) as error:
        load_config(path, *stage_names)
    assert str(error.value) == f"{path}: {expected}"


def test_helper_names_far_from_stage_names_pass(tmp_path):
    helpers = "lr = 1e-3\noptimisation = {}\ncombined_data = 1\ntrain_set = 2\nimg_size = 64\n"
    config = load_config(write(tmp_path, complete_config() + "\n" + helpers))
    assert (config.lr, config.img_size) == (1e-3, 64)


def test_setting_a_name_neither_the_config_nor_the_stage_has_says_so(tmp_path):
    path = write(tmp_path, complete_config())
    with pytest.raises(ConfigError) as error:
        load_config(path, overrides={"foo": 3})
    assert str(error.value).startswith(
        f"--set foo: no such name in config {path} or among the stage's names ("
    )
    with pytest.raises(ConfigError) as error:
        load_config(path, overrides={"log_nme": "x"})
    assert str(error.value) == (
        f"--set log_nme: no such name in config {path} or among the stage's names "
        "(did you mean log_name?)"
    )


def test_a_kd_config_is_refused_by_the_supervised_stage_and_vice_versa(tmp_path):
    kd = write(tmp_path, complete_config(teacher_ckpt_path="'t.ckpt'", kd_alpha="0.5"), "kd.py")
    with pytest.raises(ConfigError) as error:
        load_config(kd)
    assert str(error.value) == (
        f"{kd}: sets teacher_ckpt_path, kd_alpha, so this is a distillation config: train it "
        "with train_kd.py"
    )
    plain = write(tmp_path, complete_config(), "plain.py")
    with pytest.raises(ConfigError) as error:
        load_config(plain, KD_REQUIRED, KD_DEFAULTS)
    assert "train it with train_supervision.py" in str(error.value)
    assert load_config(kd, KD_REQUIRED, KD_DEFAULTS).kd_alpha == 0.5


@pytest.mark.slow  # six script runs, each importing torch and Lightning afresh
@pytest.mark.parametrize(
    ("script", "text", "args", "expected"),
    [
        ("train_supervision.py", "x = 1\ny = 1 / 0\n", [], "cfg.py, line 2: ZeroDivisionError"),
        ("train_supervision.py", "max_epoch = (\n", [], "cfg.py, line 1: SyntaxError: "),
        (
            "train_supervision.py",
            complete_config(max_epochs="3"),
            [],
            "max_epochs: no stage reads it; did you mean max_epoch?",
        ),
        (
            "train_supervision.py",
            complete_config(),
            ["--set", "foo=3"],
            "--set foo: no such name in config",
        ),
        (
            "train_supervision.py",
            complete_config(teacher_ckpt_path="'t.ckpt'"),
            [],
            "so this is a distillation config: train it with train_kd.py",
        ),
        (
            "train_kd.py",
            complete_config(),
            [],
            "no teacher_ckpt_path, so this is not a distillation config: train it with "
            "train_supervision.py",
        ),
    ],
)
def test_stage_scripts_report_config_errors_in_one_line(tmp_path, script, text, args, expected):
    path = write(tmp_path, text)
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), "-c", str(path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and expected in lines[0]
    assert "Traceback" not in result.stderr
