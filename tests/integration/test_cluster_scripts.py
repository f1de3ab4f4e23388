"""The cluster's scripts with the real tools: packer validate, vagrant validate, shellcheck, and
the provisioning script run for real in a Debian container (up to the Kubernetes packages,
which this network cannot reach). The container has no network: its apt reads a local repository
of the packages the script installs, fetched on the host once per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import need

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "scripts/packer/box.json"
VAGRANTFILE_DIR = ROOT / "scripts/vagrant"


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        need(name, f"{name} is not installed")
    return path


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


def broken_template(tmp_path: Path) -> Path:
    template = json.loads(TEMPLATE.read_text())
    template["builders"][0]["source_box"] = template["builders"][0].pop("source_path")  # not a field
    shutil.copy(ROOT / "scripts/packer/provision.sh", tmp_path / "provision.sh")
    (tmp_path / "box.json").write_text(json.dumps(template))
    return tmp_path / "box.json"


@pytest.mark.parametrize("variant, ok", [("as-shipped", True), ("unknown-field", False)], ids=str)
def test_packer_validates_the_box_template(tmp_path, variant, ok):
    packer = tool("packer")
    template = TEMPLATE if variant == "as-shipped" else broken_template(tmp_path)
    done = run([packer, "validate", "-var", "kubernetes_version=1.31.4", str(template)],
               env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    assert (done.returncode == 0) is ok, done.stdout + done.stderr


@pytest.mark.parametrize("settings, ok, message", [
    ({}, True, "validated successfully"),
    ({"WORKERS": "3", "CONTROL_PLANE_IP": "10.20.30.40"}, True, "worker3"),
    ({"CONTROL_PLANE_MEMORY_MB": "1024"}, False, "CONTROL_PLANE_MEMORY_MB: expected a whole number of at least 2048"),
    ({"CONTROL_PLANE_IP": "192.168.56.253"}, False, "with room for 2 workers"),
], ids=["defaults", "three-workers", "control-plane-too-small", "no-room-for-workers"])
def test_vagrant_validates_the_vagrantfile(tmp_path, settings, ok, message):
    vagrant = tool("vagrant")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINOTAGE_CLUSTER_")}
    env.update({f"PINOTAGE_CLUSTER_{k}": v for k, v in settings.items()})
    env.update(VAGRANT_HOME=str(tmp_path / "vagrant.d"), VAGRANT_CHECKPOINT_DISABLE="1")
    done = run([vagrant, "validate", "--ignore-provider"], cwd=VAGRANTFILE_DIR, env=env)
    assert (done.returncode == 0) is ok, done.stdout + done.stderr
    assert message in done.stdout + done.stderr


def shell_scripts() -> list[Path]:
    found = []
    for path in sorted((ROOT / "scripts").rglob("*")):
        if not path.is_file():
            continue
        head = path.read_bytes()[:64]
        if path.suffix in (".sh", ".bash") or head.startswith(b"#!") and (b"sh" in head.split(b"\n")[0]):
            found.append(path)
    return found


def test_the_repository_has_the_shell_scripts_this_suite_expects():
    names = {str(p.relative_to(ROOT)) for p in shell_scripts()}
    assert {"scripts/test", "scripts/demo", "scripts/lib.sh", "scripts/base-image",
            "scripts/packer/provision.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck_passes(script):
    shellcheck = tool("shellcheck")
    done = run([shellcheck, "--external-sources", "--source-path=SCRIPTDIR", str(script)], cwd=ROOT)
    assert done.returncode == 0, done.stdout


# What a container can show of the provisioning: the files that set the kernel up at every boot,
# and containerd's configuration. Loading modules, sysctls and swapoff need a real kernel (the VM).
INSPECT = r"""
set -e
echo "--- modules";  cat /etc/modules-load.d/k8s.conf
echo "--- sysctl";   cat /etc/sysctl.d/99-kubernetes.conf
echo "--- fstab";    cat /etc/fstab
echo "--- cgroup";   grep -E '^\s*SystemdCgroup\s*=' /etc/containerd/config.toml
echo "--- pause";    grep -E '^\s*sandbox_image\s*=' /etc/containerd/config.toml
echo "--- packages"; dpkg-query -W -f='${Package} ${Status}\n' containerd runc | sed 's/ install ok installed/ installed/'
echo "--- kubernetes"; ls /etc/apt/sources.list.d/ | grep -c kubernetes || true
echo "--- network";  ls /sys/class/net
"""
FSTAB = ("UUID=1111 / ext4 errors=remount-ro 0 1\n"
         "UUID=2222 none swap sw 0 0\n"
         "/swapfile none swap sw 0 0\n"
         "# UUID=3333 none swap sw 0 0\n")


def sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("--- "):
            current = line[4:]
            out[current] = []
        elif current:
            out[current].append(line.strip())
    return out


# What provision.sh installs with apt (install_containerd); the local repository must hold them.
PROVISION_PACKAGES = ("containerd", "runc", "ca-certificates", "curl", "gpg",
                      "iptables", "iproute2", "conntrack", "socat", "ethtool")
# Point the container's apt at the local repository only, before provision.sh runs.
LOCAL_SOURCES = ("rm -f /etc/apt/sources.list.d/* && "
                 "echo 'deb [trusted=yes] file:/repo ./' > /etc/apt/sources.list && ")


def dependency_closure(packages) -> list[str]:
    """List the packages and everything they need to install, as the host's apt resolves them."""
    done = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", *packages])
    assert done.returncode == 0, done.stderr
    # Indented lines are relations; "<name>" lines are virtual packages, which their providers satisfy.
    return sorted({line for line in done.stdout.splitlines() if line and not line.startswith((" ", "<"))})


def candidate_versions(packages) -> dict[str, str]:
    """Map each package to the version the host's apt would install."""
    done = run(["apt-cache", "show", "--no-all-versions", *packages])
    assert done.returncode == 0, done.stderr
    versions, name = {}, None
    for line in done.stdout.splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and name:
            versions[name] = line.split(": ", 1)[1]
    return versions


def fetch_debs(wanted: dict[str, str], into: Path) -> None:
    """Copy each package's .deb from the host's apt cache, or download it with apt-get."""
    archives = Path("/var/cache/apt/archives")
    missing = []
    for name, version in wanted.items():
        # apt's cache names files NAME_VERSION_ARCH.deb with the epoch's colon written as %3a.
        cached = sorted(archives.glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))
        if cached:
            shutil.copy(cached[0], into)
        else:
            missing.append(f"{name}={version}")
    if missing:
        done = run(["apt-get", "download", "-q", *missing], cwd=into)
        if done.returncode != 0:
            need("the Debian packages for provision.sh", done.stderr.strip().splitlines()[-1:])


@pytest.fixture(scope="session")
def local_apt_repo(docker_client, base_images, tmp_path_factory):
    """Build a flat apt repository with what provision.sh installs that the base image lacks."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-scanpackages"):
        need("a local apt repository", "apt-get and dpkg-scanpackages (dpkg-dev) are needed on the host")
    installed_text = docker_client.containers.run(
        base_images.runtime, ["dpkg-query", "-W", "-f=${Package} ${Version}\\n"],
        network_mode="none", remove=True).decode()
    installed = dict(line.split(" ", 1) for line in installed_text.splitlines() if " " in line)
    closure = dependency_closure(PROVISION_PACKAGES)
    versions = candidate_versions(closure)
    # A package already installed at another version goes in too, as a mirror would offer it.
    wanted = {name: version for name, version in versions.items() if installed.get(name) != version}
    assert set(PROVISION_PACKAGES) - set(installed) <= set(wanted), "the closure lost a named package"
    repo = tmp_path_factory.mktemp("apt-repo")
    fetch_debs(wanted, repo)
    done = run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=repo)
    assert done.returncode == 0, done.stderr
    (repo / "Packages").write_text(done.stdout)
    # Mounted at /repo, the folder's own mode is all the container sees: apt's _apt user reads it too.
    repo.chmod(0o755)
    yield repo
    shutil.rmtree(repo)  # some 40 MB of packages: pytest would keep them with its last three runs


@pytest.fixture(scope="module")
def provisioned(docker_client, base_images, local_apt_repo):
    """Provision a Debian container twice (the second run checks it is safe to run again)."""
    name = f"pinotage-h6-provision-{uuid.uuid4().hex[:8]}"
    command = (LOCAL_SOURCES + "printf %s \"$FSTAB\" > /etc/fstab && "
               "bash /provision/provision.sh && /bin/sh -c \"$INSPECT\" > /tmp/first && "
               "bash /provision/provision.sh && /bin/sh -c \"$INSPECT\" > /tmp/second && "
               "cat /tmp/first && echo '=== second' && cat /tmp/second")
    container = docker_client.containers.run(
        base_images.runtime, ["bash", "-c", command], name=name, detach=True, network_mode="none",
        environment={"K8S_VERSION": "1.31.4", "PINOTAGE_SKIP_KUBERNETES": "1", "PINOTAGE_SKIP_KERNEL": "1",
                     "INSPECT": INSPECT, "FSTAB": FSTAB},
        volumes={str(ROOT / "scripts/packer"): {"bind": "/provision", "mode": "ro"},
                 str(local_apt_repo): {"bind": "/repo", "mode": "ro"}})
    try:
        result = container.wait(timeout=600)
        logs = container.logs().decode(errors="replace")
        assert result["StatusCode"] == 0, logs[-3000:]
        container.reload()
        first, second = logs.split("=== second")
        yield sections(first[first.rindex("--- modules"):]), sections(second), container.attrs["HostConfig"]
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("section, expected", [
    ("modules", ["overlay", "br_netfilter"]),
    ("sysctl", ["net.bridge.bridge-nf-call-iptables = 1", "net.bridge.bridge-nf-call-ip6tables = 1",
                "net.ipv4.ip_forward = 1"]),
    ("fstab", ["UUID=1111 / ext4 errors=remount-ro 0 1", "# UUID=2222 none swap sw 0 0",
               "# /swapfile none swap sw 0 0", "# UUID=3333 none swap sw 0 0"]),
    ("cgroup", ["SystemdCgroup = true"]),
    ("pause", ['sandbox_image = "registry.k8s.io/pause:3.10"']),
    ("packages", ["containerd installed", "runc installed"]),
    ("kubernetes", ["0"]),
    ("network", ["lo"]),
], ids=["modules-at-boot", "sysctls-persisted", "swap-off-in-fstab", "containerd-systemd-cgroup",
        "pause-image", "containerd-installed", "stopped-before-pkgs.k8s.io", "loopback-only"])
def test_provisioning_in_a_debian_container(provisioned, section, expected):
    first, second, _ = provisioned
    assert first[section] == expected
    assert second[section] == expected, "a second run must leave the same result"


def test_the_provisioning_container_has_no_network(provisioned):
    _, _, host_config = provisioned
    assert host_config["NetworkMode"] == "none"


def test_provisioning_refuses_a_malformed_kubernetes_version():
    bash = tool("bash")
    done = run([bash, str(ROOT / "scripts/packer/provision.sh")], env={"PATH": os.environ["PATH"], "K8S_VERSION": "1.31"})
    assert done.returncode == 2 and "K8S_VERSION must look like 1.31.4, got '1.31'" in done.stderr
