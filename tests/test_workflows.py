"""The GitHub workflows pass actionlint, and CI, .ci/run and the README run the same test command."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Run the tests", 1)[1]
    return re.search(r"```sh\n(.+?)\n```", section, re.S).group(1).strip()


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not installed")
def test_actionlint_finds_nothing():
    assert {path.name for path in WORKFLOWS} == {"ci.yml", "wheels.yml"}
    result = subprocess.run(["actionlint", *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command_on_every_supported_python():
    command = readme_test_command()
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert command in ci
    assert command in (ROOT / ".ci" / "run").read_text()
    assert re.search(r'python: \["3\.9", "3\.10", "3\.11", "3\.12", "3\.13"\]', ci)


def test_wheels_cover_both_linux_architectures_and_the_sdist():
    wheels = (ROOT / ".github" / "workflows" / "wheels.yml").read_text()
    assert "pypa/cibuildwheel@" in wheels
    assert "arch: [x86_64, aarch64]" in wheels
    assert "python -m build --sdist" in wheels
    # OpenSSL 3 to build core/tls.pyx against (auditwheel bundles it), and the suite run against each wheel
    assert "CIBW_MANYLINUX_X86_64_IMAGE: manylinux_2_34" in wheels
    assert "CIBW_MANYLINUX_AARCH64_IMAGE: manylinux_2_34" in wheels
    assert "CIBW_TEST_COMMAND: bash {project}/.ci/test-wheel {project}" in wheels
    assert (ROOT / ".ci" / "test-wheel").stat().st_mode & 0o111
