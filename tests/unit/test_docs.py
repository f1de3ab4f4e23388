"""The docs against the repository: what docs/*.md and README.md name must exist and agree.

Each fact is one row: every `pinotage …` line parses with the real parser; every file path named
exists; every namespace, ServiceAccount, Deployment, Service, Secret and kustomization a `kubectl`
line names is in k8s/; every setting and PINOTAGE_* variable named exists; every Secret and key
the walk in docs/jenkins.md creates is one the manifests and casc.yaml read, and the other way
round; every credential, user, object, Secret or key name docs/jenkins.md gives is declared where
it is used; the cluster steps docs/cluster.md lists are the CLI's, and the doctor's checks the
doctor's. None of it runs a service: what only a real cluster or Jenkins can tell is said in the
docs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline import cli
from pipeline.jobs import Call, check_call, pinotage_calls

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
CASC = ROOT / "docker" / "jenkins" / "casc.yaml"
CASC_SECRET_FILE = re.compile(r"\$\{readFile(?:Base64)?:(/run/secrets/[^}]+)\}")
TOP_DIRS = r"(?:docker|k8s|scripts|jobs|tests|pipeline|docs|benchmarks|tools|\.ci)/"
# an assignment before a command (`VAR=value pinotage …`), which the job scanner does not skip
ASSIGNMENTS = re.compile(r"(?m)^(\s*)(?:export\s+)?(?:[A-Z_]+=(?:\"[^\"]*\"|\S*)\s+)+(?=pinotage\b)")
# a usage line's placeholder (`--limit N`, `[REVISION]`): any value of the right kind stands for it
METAVAR = re.compile(r"^[A-Z][A-Z_]*$")
EXAMPLES = {"COMMIT": "0123abcd"}
FILE_SUFFIXES = {"py", "conf", "yaml", "yml", "md", "json", "txt", "sh", "lock"}  # `image.py` is a file


def code_of(text: str) -> list[str]:
    """Return the code blocks and the inline code spans outside them."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def doc_commands() -> list[tuple[str, tuple[str, ...]]]:
    found = []
    for doc in DOCS:
        for code in code_of(doc.read_text()):
            code = ASSIGNMENTS.sub(r"\1", code)
            if re.search(r"(?m)^\s*pinotage\s+\S", code):
                found += [(doc.name, argv) for argv in pinotage_calls(code) if argv]
    return found


@pytest.mark.parametrize("doc, argv", doc_commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_every_pinotage_command_in_the_docs_parses(doc, argv):
    words = [word.strip("[]") for word in argv]
    words = [EXAMPLES.get(word, "1") if METAVAR.match(word) else word for word in words if word]
    assert check_call(Call(doc, tuple(words)), cli.build_parser()) == ""


def test_the_docs_name_many_pinotage_commands():
    # the scanner finds them: a change to the docs' markup must not silence the test above
    assert len(doc_commands()) > 60
    assert ("jenkins.md", ("jobs", "update", "--set", "jenkins.url=https://jenkins.example.com/", "--set",
                           "jenkins.user=pinotage-seed")) in doc_commands()


def named_paths(text: str) -> set[str]:
    names = set(re.findall(rf"(?<![\w/.]){TOP_DIRS}[\w./*<>-]*[\w/*>]", text))
    return {re.sub(r"<[^>]*>", "*", name).split("::")[0] for name in names}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_and_link_in_the_docs_exists(doc):
    text = doc.read_text()
    missing = [name for name in sorted(named_paths(text))
               if not (list(ROOT.glob(name.rstrip("/"))) if "*" in name else (ROOT / name).exists())]
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    missing += [link for link in links if not (doc.parent / link).exists()]
    assert missing == []


def manifests() -> list[tuple[Path, dict]]:
    return [(path, obj) for path in sorted((ROOT / "k8s").rglob("*.yaml"))
            for obj in yaml.safe_load_all(path.read_text()) if isinstance(obj, dict)]


def secrets_read() -> set[tuple[str, str, str]]:
    """(namespace, Secret, key) that a workload reads: by env reference, or as a file casc.yaml reads."""
    wanted = set()
    casc_files = set(CASC_SECRET_FILE.findall(CASC.read_text()))
    for _, obj in manifests():
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        namespace = obj["metadata"]["namespace"]
        volumes = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    wanted.add((namespace, ref["name"], ref["key"]))
            for mount in container.get("volumeMounts", []):
                if mount["name"] in volumes:
                    prefix = mount["mountPath"].rstrip("/") + "/"
                    wanted |= {(namespace, volumes[mount["name"]], path[len(prefix):])
                               for path in casc_files if path.startswith(prefix)}
    return wanted


def secrets_created(text: str) -> set[tuple[str, str, str]]:
    """(namespace, Secret, key) that the `kubectl create secret generic` lines of a page make."""
    made = set()
    for code in code_of(text):
        for line in code.replace("\\\n", " ").splitlines():
            if "create secret generic" not in line or "..." in line:
                continue
            words = shlex.split(line, comments=True)
            namespace = words[words.index("-n") + 1]
            name = words[words.index("generic") + 1]
            made |= {(namespace, name, word.split("=", 2)[1]) for word in words
                     if word.startswith(("--from-literal=", "--from-file="))}
    return made


def test_the_walk_creates_exactly_the_secrets_and_keys_jenkins_reads():
    read = secrets_read()
    assert ("jenkins", "jenkins-credentials", "kubeconfig") in read  # the reader finds the mounted ones
    assert secrets_created((ROOT / "docs" / "jenkins.md").read_text()) == read


def declared_names() -> set[str]:
    casc = yaml.safe_load(CASC.read_text())
    names = {body["id"] for domain in casc["credentials"]["system"]["domainCredentials"]
             for entry in domain["credentials"] for body in entry.values()}
    names |= {user["id"] for user in casc["jenkins"]["securityRealm"]["local"]["users"]}
    names |= {obj["metadata"]["name"] for _, obj in manifests() if obj.get("metadata", {}).get("name")}
    return names | {name for _, name, _ in secrets_read()} | {key for _, _, key in secrets_read()}


def test_every_credential_user_and_object_name_in_the_jenkins_walk_is_declared():
    text = (ROOT / "docs" / "jenkins.md").read_text()
    named = set(re.findall(r"`((?:pinotage|github|jenkins)-[a-z0-9-]+)`", text))
    assert named - declared_names() == set()
    casc = yaml.safe_load(CASC.read_text())
    credential_ids = {body["id"] for domain in casc["credentials"]["system"]["domainCredentials"]
                      for entry in domain["credentials"] for body in entry.values()}
    assert credential_ids - named == set(), "a credential the walk never names is one nobody sets up"


def test_cluster_doc_lists_the_steps_the_cli_runs():
    text = (ROOT / "docs" / "cluster.md").read_text()
    table = text.split("## The steps", 1)[1]
    documented = re.findall(r"(?m)^\| `(\w+)(?: NODE)?` \|", table)
    cluster = cli.build_parser()._subparsers._group_actions[0].choices["cluster"]
    steps = cluster._subparsers._group_actions[0].choices
    assert set(documented) == set(steps) - {"rebuild"}
    rebuild_help = steps["rebuild"].description.split(": ", 1)[1]
    assert f"# {rebuild_help}\n" in text


@pytest.mark.parametrize("manifest", ["k8s/ci/agent-pod.yaml", "k8s/jenkins/deployment.yaml"])
def test_the_build_pod_and_jenkins_pull_their_images_anonymously(manifest):
    # docs/jenkins.md step 3: the three images must be public, or a pull secret added to both files
    assert "imagePullSecrets" not in (ROOT / manifest).read_text()


@pytest.mark.parametrize("conf", ["jenkins.conf", "github-webhook.conf"])
def test_nginx_in_front_of_jenkins_proxies_to_the_jenkins_service(conf):
    # docs/jenkins.md step 9 and "Jenkins on a private network": Jenkins has no NodePort
    service = yaml.safe_load((ROOT / "k8s" / "jenkins" / "service.yaml").read_text())["spec"]
    [upstream] = re.findall(r"(?m)^\s*server\s+(\S+);", (ROOT / "scripts" / "nginx" / conf).read_text())
    assert upstream == f"{service['clusterIP']}:{service['ports'][0]['port']}"


def test_the_certificate_paths_in_the_walk_are_those_nginx_reads():
    named = set(re.findall(r"`(/etc/ssl/[\w./-]+)`", (ROOT / "docs" / "jenkins.md").read_text()))
    conf = (ROOT / "scripts" / "nginx" / "jenkins.conf").read_text()
    read = set(re.findall(r"ssl_certificate(?:_key)?\s+(\S+);", conf))
    assert named == read


def test_the_repository_named_in_pinotage_yaml_is_the_one_jobs_build():
    # docs/jenkins.md step 2: the four settings name one GitHub repository
    github_repo = yaml.safe_load((ROOT / "pinotage.yaml").read_text())["github"]["repo"]
    [defaults] = [entry["defaults"] for entry in yaml.safe_load((ROOT / "jobs" / "defaults.yaml").read_text())
                  if entry["defaults"]["name"] == "global"]
    assert f"{defaults['repo-owner']}/{defaults['repo']}" == github_repo
    assert defaults["repo-url"] == f"https://github.com/{github_repo}.git"


def test_the_walk_builds_the_images_the_build_pod_and_jenkins_run():
    # docs/jenkins.md step 3 builds `you/NAME:TAG` for the manifests' `pinotage/NAME:TAG`
    built = set(re.findall(r"-t you/([\w.-]+:[\w.-]+)", (ROOT / "docs" / "jenkins.md").read_text()))
    run = {image.split("/", 1)[1] for manifest in ("k8s/ci/agent-pod.yaml", "k8s/jenkins/deployment.yaml")
           for image in re.findall(r"(?m)^\s*image:\s*(\S+)", (ROOT / manifest).read_text())}
    assert built == run


def kubectl_lines() -> list[tuple[str, str]]:
    lines = []
    for doc in DOCS:
        text = re.sub(r"\\\n\s*", " ", doc.read_text())
        lines += [(doc.name, line) for line in re.findall(r"kubectl [^`\n]*", text)]
    return lines


def test_every_object_a_kubectl_line_of_the_docs_names_is_in_k8s():
    def namespace_of(path: Path, obj: dict) -> str:
        if obj["kind"] == "Namespace":
            return obj["metadata"]["name"]
        kustomization = path.parent / "kustomization.yaml"
        default = yaml.safe_load(kustomization.read_text()).get("namespace") if kustomization.is_file() else None
        return obj["metadata"].get("namespace") or default

    objects = {(obj["kind"], namespace_of(path, obj), obj["metadata"]["name"])
               for path, obj in manifests() if obj.get("metadata", {}).get("name")}
    namespaces = {name for kind, _, name in objects if kind == "Namespace"}
    secrets = {(namespace, name) for namespace, name, _ in secrets_read()}
    kinds = {"deploy": "Deployment", "svc": "Service"}
    missing, kustomized = [], []
    for doc, line in kubectl_lines():
        namespace = (re.findall(r"-n (\S+)", line) or [None])[0]
        if namespace and namespace not in namespaces:
            missing.append(f"{doc}: namespace {namespace}")
        for kind, name in re.findall(r"\b(deploy|svc)/([\w-]+)", line):
            if (kinds[kind], namespace, name) not in objects:
                missing.append(f"{doc}: {kinds[kind]} {namespace}/{name}")
        for account in re.findall(r"create token ([\w-]+)", line):
            if ("ServiceAccount", namespace, account) not in objects:
                missing.append(f"{doc}: ServiceAccount {namespace}/{account}")
        for name in re.findall(r"(?:secret generic|patch secret) ([\w-]+)", line):
            if (namespace, name) not in secrets:
                missing.append(f"{doc}: Secret {namespace}/{name} that nothing reads")
        for folder in re.findall(r"apply -k (?:pinotage/)?(k8s/[\w-]+)", line):
            kustomized.append(folder)
            if not (ROOT / folder / "kustomization.yaml").is_file():
                missing.append(f"{doc}: {folder} has no kustomization.yaml")
    assert {"k8s/presentation", "k8s/previews", "k8s/ci", "k8s/jenkins"} <= set(kustomized)
    assert missing == []


def test_every_environment_variable_the_docs_name_is_read_somewhere():
    named = {name for doc in DOCS for name in re.findall(r"\bPINOTAGE_[A-Z_]*[A-Z]\b", doc.read_text())}
    sources = [path for folder in ("pipeline", "tests", "scripts", "docker", "k8s", "jobs")
               for path in (ROOT / folder).rglob("*") if path.is_file() and path.suffix != ".pyc"]
    text = "\n".join(path.read_text(errors="replace") for path in sources + [ROOT / "Jenkinsfile"])
    from pipeline import config

    settings = {"PINOTAGE_" + key.replace(".", "_").upper() for key in config.keys()} | set(config.SECRETS.values())
    assert len(named) > 15
    assert {name for name in named if name not in settings and name not in text} == set()


def test_every_setting_the_docs_name_exists():
    from pipeline import config

    keys = set(config.keys())
    sections = {key.split(".")[0] for key in keys if "." in key}
    named = {(doc.name, name) for doc in DOCS
             for name in re.findall(r"`([a-z]+\.[a-z_]+)(?:[:=` ])", doc.read_text())
             if name.split(".")[0] in sections and name.split(".")[1] not in FILE_SUFFIXES}
    assert len(named) > 20
    assert {(doc, name) for doc, name in named if name not in keys} == set()


def test_every_check_doctor_md_lists_is_one_the_doctor_makes_in_its_area():
    table = (ROOT / "docs" / "doctor.md").read_text().split("## What it checks", 1)[1].split("\n## ", 1)[0]
    listed, area = [], ""
    for first, second in re.findall(r"(?m)^\|([^|]*)\|([^|]*)\|", table):
        if first.strip() not in ("area", "---"):
            area = first.strip() or area
            listed += [(area, check) for check in re.split(r",\s*", second.strip())]
    assert {area for area, _ in listed} == set(cli.DOCTOR_AREAS)
    sources = {path.stem: path.read_text() for path in (ROOT / "pipeline" / "doctor").glob("*.py")}
    module = {"kubernetes": "kube", "config": "local"}
    made = {area: sources.get(module.get(area, area), "") for area in cli.DOCTOR_AREAS}
    assert [(area, check) for area, check in listed if f'"{check}"' not in made[area]] == []
