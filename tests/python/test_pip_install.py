"""The package as pip users get it: `pip wheel` builds a wheel against the interpreter's torch, a new
venv installs it, `pip show` and `pip uninstall` know it, and `import lossguard` refuses a torch it
was not built for, or no torch at all, with what to do. Runs under the project's environment
(.venv), whose torch the new venv borrows through a .pth file instead of downloading it again."""

import glob
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

SOURCE = os.environ.get("LOSSGUARD_SOURCE_DIR",
                        os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("LOSSGUARD_BUILD_DIR", os.path.join(SOURCE, "build"))

PROBE = ("import lossguard, torch; print(lossguard.__file__); "
         "x = torch.zeros(1, 3, 5, requires_grad=True); "
         "loss = lossguard.causal_lm_loss(x, torch.tensor([[1, 2, 3]])); loss.backward(); "
         "print(round(loss.item(), 6))")


def run(*args, **kwargs):
    return subprocess.run(list(args), capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    result = run(sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
                 "--config-settings=build-dir=" + os.path.join(BUILD, "python-wheel"),
                 "-w", str(out), SOURCE)
    assert result.returncode == 0, result.stderr
    [path] = glob.glob(str(out / "lossguard-*.whl"))
    return path


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A new venv of the same base interpreter that sees this environment's torch (a .pth line)."""
    path = tmp_path_factory.mktemp("venv")
    result = run(sys._base_executable, "-m", "venv", str(path))
    assert result.returncode == 0, result.stderr
    [site] = glob.glob(str(path / "lib" / "python3*" / "site-packages"))
    with open(os.path.join(site, "borrowed_torch.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    return path


def test_pip_wheel_builds_a_wheel_with_the_extension_and_the_integrations(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("lossguard/_C.") and n.endswith(".so") for n in names), names
    for module in ("__init__.py", "_build_info.py", "collector.py", "integrations/hf.py",
                   "integrations/axolotl.py"):
        assert "lossguard/" + module in names


def test_a_venv_installs_shows_imports_and_uninstalls_the_wheel(wheel, venv, tmp_path):
    python = str(venv / "bin" / "python")
    # --ignore-installed: the borrowed site-packages holds the project environment's lossguard.
    installed = run(python, "-m", "pip", "install", "--no-deps", "--ignore-installed", wheel)
    assert installed.returncode == 0, installed.stderr
    shown = run(python, "-m", "pip", "show", "lossguard")
    assert shown.returncode == 0 and "Version: 0.1.0" in shown.stdout
    assert f"Location: {venv}" in shown.stdout

    probe = run(python, "-c", PROBE, cwd=str(tmp_path))
    assert probe.returncode == 0, probe.stderr
    where, value = probe.stdout.split()
    assert where.startswith(str(venv))
    assert float(value) == round(__import__("math").log(5), 6)  # uniform logits: ln V

    removed = run(python, "-m", "pip", "uninstall", "-y", "lossguard")
    assert removed.returncode == 0, removed.stderr
    assert f"Location: {venv}" not in run(python, "-m", "pip", "show", "lossguard").stdout
    assert not glob.glob(str(venv / "lib" / "python3*" / "site-packages" / "lossguard"))


def test_import_refuses_a_torch_other_than_the_one_it_was_built_for(wheel, tmp_path):
    target = tmp_path / "site"
    assert run(sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target),
               wheel).returncode == 0
    info = target / "lossguard" / "_build_info.py"
    info.write_text(info.read_text().replace("TORCH_VERSION = ", 'TORCH_VERSION = "1.0.0" or '))
    result = run(sys.executable, "-c", "import lossguard", cwd=str(tmp_path),
                 env=dict(os.environ, PYTHONPATH=str(target)))
    import torch
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: lossguard's extension was built for torch 1.0.0")
    assert f"this interpreter has torch {torch.__version__}" in message
    assert "pip install --no-build-isolation" in message


def test_import_without_torch_says_that_torch_is_needed(tmp_path):
    blocked = "import sys; sys.modules['torch'] = None; import lossguard"
    result = run(sys.executable, "-c", blocked, cwd=str(tmp_path))
    assert result.returncode != 0
    assert "ImportError: lossguard needs PyTorch" in result.stderr
