"""``pretrained=True`` where timm cannot fetch its weights (no network, HF_HUB_OFFLINE=1): one clear
CheckpointError naming the backbone, the cache folder and the fixes; other errors pass unchanged.

No test here touches the network: the subprocesses run with HF_HUB_OFFLINE=1 and an empty cache,
and the url-only case is simulated.
"""

import json
import os
import subprocess
import sys
import types
import urllib.error
from pathlib import Path

import pytest
import timm

from geoseg.errors import CheckpointError
from geoseg.models import UNetFormer
from geoseg.models.pretrained import create_pretrained, weights_cache_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
# FTUNetFormer with a small own Swin (timm's full swin_tiny is built to load the weights into)
TINY_FT = (
    "FTUNetFormer(backbone='swin_tiny_patch4_window7_224', backbone_kwargs=dict(embed_dim=16, "
    "depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)), decode_channels=16, pretrained=True)"
)


def offline_env(tmp_path: Path) -> dict[str, str]:
    """This environment, offline, with empty Hugging Face and torch hub caches under tmp_path."""
    env = dict(os.environ)
    env.pop("HF_HUB_CACHE", None)
    env.pop("GEOSEG_DEBUG", None)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        TORCH_HOME=str(tmp_path / "torch"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    return env


def run_offline(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=offline_env(tmp_path),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_fetch_message(message: str, backbone: str, tmp_path: Path) -> None:
    assert "\n" not in message
    assert f"'{backbone}'" in message
    assert str(tmp_path / "hf" / "hub") in message  # HF_HOME/hub: where timm looked
    assert "HF_HUB_OFFLINE is set" in message
    assert f"timm.create_model('{backbone}', pretrained=True)" in message
    assert 'pretrained="/path/to/weights.pth"' in message
    assert "HF_HOME / HF_HUB_CACHE" in message


@pytest.mark.slow  # a fresh interpreter imports torch and timm
def test_offline_pretrained_networks_raise_one_line_checkpoint_error(tmp_path):
    code = f"""
import json
from geoseg.models import FTUNetFormer, UNetFormer
results = []
for build in (lambda: UNetFormer(pretrained=True), lambda: {TINY_FT}):
    try:
        build()
        results.append(["built", ""])
    except Exception as error:
        results.append([type(error).__name__, str(error), type(error.__cause__).__name__])
print(json.dumps(results))
"""
    done = run_offline(code, tmp_path)
    assert done.returncode == 0, done.stderr
    unet, ft = json.loads(done.stdout.strip().splitlines()[-1])
    for (kind, message, cause), backbone in (
        (unet, "resnet18"),
        (ft, "swin_tiny_patch4_window7_224"),
    ):
        assert kind == "CheckpointError", message
        assert cause == "LocalEntryNotFoundError"  # kept as the cause for GEOSEG_DEBUG=1
        assert_fetch_message(message, backbone, tmp_path)


@pytest.mark.slow  # a fresh interpreter imports torch and timm
def test_offline_pretrained_in_a_stage_script_prints_one_error_line(tmp_path):
    code = """
from geoseg.cli import run_script
from geoseg.models import UNetFormer
run_script(lambda: UNetFormer(pretrained=True))
"""
    done = run_offline(code, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [lines[-1]]  # one error line, the last (timm logs where it loads from before)
    assert_fetch_message(errors[0].removeprefix("error: "), "resnet18", tmp_path)


def test_other_errors_pass_unchanged(monkeypatch):
    def bad_kwarg(*args, **kwargs):
        raise TypeError("bad kwarg")

    monkeypatch.setattr(timm, "create_model", bad_kwarg)
    with pytest.raises(TypeError, match="bad kwarg"):
        UNetFormer(pretrained=True)
    with pytest.raises(TypeError, match="bad kwarg"):
        create_pretrained("resnet18")

    def unwritable(*args, **kwargs):  # an OSError that is not a network failure
        raise PermissionError("cache folder is read-only")

    monkeypatch.setattr(timm, "create_model", unwritable)
    with pytest.raises(PermissionError):
        create_pretrained("resnet18")


def test_url_only_weights_name_torch_hub_checkpoints(monkeypatch, tmp_path):
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    def no_network(*args, **kwargs):
        raise refused

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(timm, "create_model", no_network)
    monkeypatch.setattr(timm, "is_model", lambda name: True)  # a made-up name with a URL
    url_only = types.SimpleNamespace(hf_hub_id=None, url="https://example.invalid/w.pth")
    monkeypatch.setattr(timm.models, "get_pretrained_cfg", lambda name: url_only)
    with pytest.raises(CheckpointError) as caught:
        create_pretrained("some_cnn", features_only=True)
    message = str(caught.value)
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "'some_cnn'" in message and "\n" not in message
    assert caught.value.__cause__ is refused
    # an explicit cache_dir is where timm looks instead
    assert weights_cache_folder("some_cnn", tmp_path / "mine") == str(tmp_path / "mine")
