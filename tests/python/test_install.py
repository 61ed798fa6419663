"""`cmake --install BUILD --component python` gives an importable package: installed into a
temporary prefix, imported from there alone (not from the build tree), it computes a loss."""

import glob
import os
import shutil
import subprocess
import sys


def test_the_installed_package_imports_and_works_outside_the_build_tree(tmp_path):
    build = os.environ["LOSSGUARD_BUILD_DIR"]
    cmake = shutil.which("cmake")
    subprocess.run([cmake, "--install", build, "--component", "python", "--prefix", str(tmp_path)],
                   check=True, capture_output=True, text=True)
    [init] = glob.glob(str(tmp_path / "lib" / "python3*" / "*-packages" / "lossguard" / "__init__.py"))
    site = os.path.dirname(os.path.dirname(init))
    assert glob.glob(os.path.join(site, "lossguard", "_C*.so"))
    assert os.path.exists(os.path.join(site, "lossguard", "integrations", "hf.py"))
    env = dict(os.environ, PYTHONPATH=site)
    probe = ("import lossguard, torch; "
             "print(lossguard.__file__); "
             "x = torch.zeros(1, 3, 5, requires_grad=True); "
             "loss = lossguard.causal_lm_loss(x, torch.tensor([[1, 2, 3]])); loss.backward(); "
             "print(round(loss.item(), 6))")
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=str(tmp_path),
                            capture_output=True, text=True, check=True)
    where, value = result.stdout.split()
    assert where.startswith(site)
    assert float(value) == round(__import__("math").log(5), 6)  # uniform logits: ln V
