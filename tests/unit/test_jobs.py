"""jobs/ and the Jenkinsfile: rendering, `pinotage jobs check`, normalising, planning updates."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline import cli, jobs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rendered() -> dict[str, jobs.RenderedJob]:
    return {job.name: job for job in jobs.render(ROOT / "jobs")}


@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of jobs/ and the Jenkinsfile that a test may break."""
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    shutil.copy(ROOT / "Jenkinsfile", tmp_path / "Jenkinsfile")
    return tmp_path


def xml_of(job: jobs.RenderedJob) -> ET.Element:
    return ET.fromstring(job.xml)


# --- jobs/ renders to the jobs the design asks for ----------------------------

def test_jobs_dir_renders_every_job(rendered):
    assert sorted(rendered) == ["drift-check", "jobs-seed", "presentation", "preview-prune", "rebuild-box",
                                "rebuild-cluster"]


@pytest.mark.parametrize("name, path, expected", [
    ("presentation", ".//trust", "org.jenkinsci.plugins.github_branch_source.ForkPullRequestDiscoveryTrait$TrustPermission"),
    ("presentation", ".//scriptPath", "Jenkinsfile"),
    ("rebuild-cluster", "concurrentBuild", "false"),
    ("rebuild-box", "concurrentBuild", "false"),
    ("jobs-seed", ".//hudson.plugins.git.BranchSpec/name", "origin/master"),
    ("jobs-seed", ".//includedRegions", "jobs/.*"),
    ("drift-check", ".//hudson.triggers.TimerTrigger/spec", "H * * * *"),
    ("drift-check", ".//hudson.plugins.git.BranchSpec/name", "origin/master"),
    ("drift-check", ".//hudson.tasks.Shell/command", "#!/bin/sh -eu\npinotage diff --profile production\n"),
    ("preview-prune", ".//hudson.triggers.TimerTrigger/spec", "H * * * *"),
    ("preview-prune", ".//hudson.tasks.Shell/command", "#!/bin/sh -eu\npinotage preview prune --profile production\n"),
], ids=["fork-prs-trusted-by-permission", "multibranch-uses-jenkinsfile", "rebuild-cluster-not-concurrent",
        "rebuild-box-not-concurrent", "seed-follows-master", "seed-runs-on-jobs-changes", "drift-hourly",
        "drift-checks-master", "drift-runs-diff", "prune-hourly", "prune-runs-prune"])
def test_rendered_job_has(rendered, name, path, expected):
    element = xml_of(rendered[name]).find(path)
    if path == ".//trust":
        assert element is not None and element.get("class") == expected
    else:
        assert element is not None and element.text == expected


def test_multibranch_job_discovers_branches_and_both_kinds_of_pr(rendered):
    traits = {element.tag.rsplit(".", 1)[-1] for element in xml_of(rendered["presentation"]).find(".//traits")}
    assert {"BranchDiscoveryTrait", "OriginPullRequestDiscoveryTrait", "ForkPullRequestDiscoveryTrait"} <= traits


def test_rebuild_cluster_parameters(rendered):
    definitions = xml_of(rendered["rebuild-cluster"]).find(".//parameterDefinitions")
    found = {(d.tag.rsplit(".", 1)[-1], d.findtext("name"), d.findtext("defaultValue")) for d in definitions}
    assert found == {("BooleanParameterDefinition", "REBUILD_BOX", "false"),
                     ("StringParameterDefinition", "NODE_COUNT", "2"),
                     ("StringParameterDefinition", "KUBERNETES_VERSION", "1.31.4")}


@pytest.mark.parametrize("name", ["jobs-seed", "rebuild-box", "rebuild-cluster", "drift-check", "preview-prune"])
def test_every_ops_job_runs_pinotage_in_a_checkout_of_the_default_branch(rendered, name):
    # pinotage reads pinotage.yaml (and the cluster jobs k8s/, the Vagrantfile, the Packer template)
    # from the workspace: without a checkout `--profile production` fails with "no profile".
    root = xml_of(rendered[name])
    assert jobs.calls_in_job(name, root)
    assert root.find("scm").get("class") == "hudson.plugins.git.GitSCM"
    assert root.findtext(".//hudson.plugins.git.BranchSpec/name") == "origin/master"


def test_seed_job_reaches_jenkins_where_the_agents_do(rendered):
    # the build pod has no PINOTAGE_JENKINS_URL: the seed names the in-cluster URL JCasC gives the agents
    import yaml

    casc = yaml.safe_load((ROOT / "docker" / "jenkins" / "casc.yaml").read_text())
    [cloud] = casc["jenkins"]["clouds"]
    [update] = [call.argv for call in jobs.calls_in_job("jobs-seed", xml_of(rendered["jobs-seed"]))
                if call.argv[:2] == ("jobs", "update")]
    assert f"jenkins.url={cloud['kubernetes']['jenkinsUrl']}" in update


def test_every_job_is_marked_managed(rendered):
    assert all(jobs.is_managed(job.xml) for job in rendered.values())


def test_only_the_ops_jobs_that_need_one_hold_a_credential_besides_the_scan_credential(rendered):
    trees = {name: xml_of(job) for name, job in rendered.items()}
    holding = {name: jobs.credential_references(tree, allowed=jobs.scan_credential(tree))
               for name, tree in trees.items()}
    assert {name for name, found in holding.items() if found} == {"jobs-seed", "drift-check", "preview-prune"}
    assert "<credentialsId>pinotage-preview-kubeconfig</credentialsId>" in holding["preview-prune"]
    assert "<credentialsId>pinotage-kubeconfig</credentialsId>" in holding["drift-check"]
    [scan] = jobs.scan_credential(xml_of(rendered["presentation"]))
    assert scan.text == jobs.SCAN_CREDENTIAL_ID
    assert jobs.credential_references(xml_of(rendered["presentation"])) == [
        f"<credentialsId>{jobs.SCAN_CREDENTIAL_ID}</credentialsId>"]


def test_casc_declares_the_scan_credential_the_job_uses():
    import yaml

    casc = yaml.safe_load((ROOT / "docker" / "jenkins" / "casc.yaml").read_text())
    declared = [(kind, body["id"]) for domain in casc["credentials"]["system"]["domainCredentials"]
                for entry in domain["credentials"] for kind, body in entry.items()]
    assert ("gitHubApp", jobs.SCAN_CREDENTIAL_ID) in declared


def test_jobs_and_jenkinsfile_pass_check(rendered):
    assert jobs.check(rendered.values(), ROOT / "Jenkinsfile", cli.build_parser()) == []


# --- check catches what it must ---------------------------------------------

PR_JOB_WITH_CREDENTIAL = """
- job:
    name: sneaky-prs
    project-type: multibranch
    scm:
      - github:
          repo-owner: pinotage
          repo: presentation
          credentials-id: github-admin-token
"""
BRANCH_JOB_WITH_BINDING = """
- job:
    name: ghprb-job
    triggers:
      - github-pull-request:
          admin-list: [someone]
    wrappers:
      - credentials-binding:
          - text:
              credential-id: registry-password
              variable: PASSWORD
"""
PR_JOB_WITH_SCAN_CREDENTIAL_AND_BINDING = """
- job:
    name: scan-and-bind
    project-type: multibranch
    scm:
      - github:
          repo-owner: pinotage
          repo: presentation
          credentials-id: pinotage-github
    wrappers:
      - credentials-binding:
          - text:
              credential-id: pinotage-github
              variable: TOKEN
"""
PR_JOB_WITH_SCAN_CREDENTIAL_ON_ANOTHER_SOURCE = """
- job:
    name: git-source
    project-type: multibranch
    scm:
      - git:
          url: https://github.com/pinotage/presentation.git
          credentials-id: pinotage-github
"""
JOB_CALLING_MISSING_COMMAND = """
- job:
    name: bad-command
    builders:
      - shell: pinotage deploy-everything --now
"""
JOB_SETTING_MISSING_KEY = """
- job:
    name: bad-setting
    builders:
      - shell: pinotage cluster rebuild --set cluster.nodes="$NODE_COUNT"
"""
JOB_CALLING_MISSING_OPTION = """
- job:
    name: bad-option
    builders:
      - shell: |
          set -e
          pinotage build --state s.json && pinotage push --force
"""


@pytest.mark.parametrize("extra_yaml, expected", [
    (PR_JOB_WITH_CREDENTIAL, "job 'sneaky-prs': a branch and pull-request job must reference no credential but"
                             " the scan credential 'pinotage-github' of its GitHub source,"
                             " found <credentialsId>github-admin-token</credentialsId>"),
    (BRANCH_JOB_WITH_BINDING, "job 'ghprb-job': a branch and pull-request job must reference no credential"),
    (PR_JOB_WITH_SCAN_CREDENTIAL_AND_BINDING, "job 'scan-and-bind': a branch and pull-request job must reference"
                                              " no credential but the scan credential 'pinotage-github'"),
    (PR_JOB_WITH_SCAN_CREDENTIAL_ON_ANOTHER_SOURCE, "found <credentialsId>pinotage-github</credentialsId>"),
    (JOB_CALLING_MISSING_COMMAND, "job 'bad-command': 'pinotage deploy-everything --now': argument COMMAND:"
                                  " invalid choice: 'deploy-everything'"),
    (JOB_CALLING_MISSING_OPTION, "job 'bad-option': 'pinotage push --force': unrecognized arguments: --force"),
    (JOB_SETTING_MISSING_KEY, "job 'bad-setting': 'pinotage cluster rebuild --set cluster.nodes=$NODE_COUNT':"
                              " --set names no setting 'cluster.nodes'"),
], ids=["pr-job-given-a-scan-credential", "ghprb-job-binding-a-secret", "scan-credential-also-bound",
        "scan-credential-on-a-git-source", "job-calls-missing-command",
        "job-calls-missing-option", "job-sets-missing-setting"])
def test_check_catches_in_jobs(repo, extra_yaml, expected):
    (repo / "jobs" / "extra.yaml").write_text(extra_yaml)
    problems = jobs.check(jobs.render(repo / "jobs"), repo / "Jenkinsfile", cli.build_parser())
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert problems[0].startswith(f"{repo / 'jobs' / 'extra.yaml'}: job ")


@pytest.mark.parametrize("old, new, expected", [
    ("sh 'pinotage gate --state pinotage-state.json'", "sh 'pinotage gait --state pinotage-state.json'",
     "'pinotage gait --state pinotage-state.json': argument COMMAND: invalid choice: 'gait'"),
    ("sh 'pinotage smoke --state pinotage-state.json'", "sh 'pinotage smoke --state pinotage-state.json --fast'",
     "unrecognized arguments: --fast"),
    ("sh 'pinotage status pending --description", "sh 'pinotage status pended --description",
     "argument STATE: invalid choice: 'pended'"),
    ("stage('Build') {\n      steps {\n        sh 'pinotage build --state pinotage-state.json'",
     "stage('Build') {\n      steps {\n        withCredentials([string(credentialsId: 'x', variable: 'X')]) {"
     " sh 'pinotage build --state pinotage-state.json' }",
     "withCredentials outside a stage that runs only on 'master'"),
    ("sh 'pinotage push --state pinotage-state.json'", 'sh "pinotage push --state pinotage-state.json"',
     "a double-quoted sh inside withCredentials lets Groovy interpolate secrets"),
    ("when { branch 'master' }", "when { branch 'main' }", "when { branch 'main' } but the default branch is 'master'"),
    ("when { branch 'master' }", "// when { branch 'master' }",
     "withCredentials outside a stage that runs only on 'master'"),
    ("when { branch 'master' }", "/* when { branch 'master' } */",
     "withCredentials outside a stage that runs only on 'master'"),
    ("if (env.BRANCH_NAME == 'master') {", "if (env.BRANCH_NAME == 'main') {",
     "if (env.BRANCH_NAME == 'main') but the default branch is 'master'"),
    ("if (env.BRANCH_NAME == 'master') {", "if (env.BRANCH_NAME != 'master') {",
     "withCredentials outside a stage that runs only on 'master'"),
    ("if (env.BRANCH_NAME == 'master') {", "if (true) {", "withCredentials outside a stage that runs only on 'master'"),
    ("if (env.BRANCH_NAME == 'master') {", "// if (env.BRANCH_NAME == 'master') {\n{",
     "withCredentials outside a stage that runs only on 'master'"),
    ("sh 'pinotage push --state pinotage-state.json'",
     'sh(label: "push", script: "pinotage push --state pinotage-state.json")',
     "a double-quoted sh inside withCredentials lets Groovy interpolate secrets"),
    ("sh 'pinotage push --state pinotage-state.json'",
     'sh returnStatus: true, script: """pinotage push --state pinotage-state.json"""',
     "a double-quoted sh inside withCredentials lets Groovy interpolate secrets"),
    ("when { branch 'master' }", "steps { echo \"when { branch 'master' }\" }",
     "withCredentials outside a stage that runs only on 'master'"),
    ("if (env.BRANCH_NAME == 'master') {", "echo \"if (env.BRANCH_NAME == 'master') {\"\n{",
     "withCredentials outside a stage that runs only on 'master'"),
    ("when { allOf { changeRequest(); expression { return !env.CHANGE_FORK } } }", "when { changeRequest() }",
     "withCredentials outside a stage that runs only on 'master'"),
    ("when { allOf { changeRequest(); expression { return !env.CHANGE_FORK } } }",
     "when { allOf { changeRequest(); expression { return env.CHANGE_FORK } } }",
     "withCredentials outside a stage that runs only on 'master'"),
    ("when { allOf { changeRequest(); expression { return !env.CHANGE_FORK } } }",
     "// when { allOf { changeRequest(); expression { return !env.CHANGE_FORK } } }",
     "withCredentials outside a stage that runs only on 'master'"),
    ("file(credentialsId: 'pinotage-preview-kubeconfig'", "file(credentialsId: 'pinotage-kubeconfig'",
     "'pinotage-kubeconfig' bound in a same-repository pull request's stage; there only pinotage-registry,"
     " pinotage-preview-kubeconfig, pinotage-github may be"),
], ids=["missing-command", "missing-option", "bad-choice", "credential-on-every-branch",
        "double-quoted-sh-with-secret", "wrong-default-branch", "line-commented-when", "block-commented-when",
        "post-if-wrong-branch", "post-if-negated", "post-if-always", "post-if-commented",
        "double-quoted-sh-after-a-label", "triple-double-quoted-sh-with-named-arguments", "when-inside-a-string",
        "post-if-inside-a-string", "pr-stage-open-to-forks", "pr-stage-for-forks-only", "pr-guard-commented",
        "production-deployer-in-a-pr-stage"])
def test_check_catches_in_jenkinsfile(repo, old, new, expected):
    jenkinsfile = repo / "Jenkinsfile"
    text = jenkinsfile.read_text()
    assert old in text
    jenkinsfile.write_text(text.replace(old, new, 1))
    problems = jobs.check(jobs.render(repo / "jobs"), jenkinsfile, cli.build_parser())
    assert any(expected in problem for problem in problems), problems
    assert all(problem.startswith(f"{jenkinsfile}:") for problem in problems), problems


def test_check_names_the_jenkinsfile_line(repo):
    jenkinsfile = repo / "Jenkinsfile"
    lines = jenkinsfile.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if "pinotage deploy" in line)
    jenkinsfile.write_text(jenkinsfile.read_text().replace("pinotage deploy", "pinotage deplo"))
    [problem] = jobs.check([], jenkinsfile, cli.build_parser())
    assert problem.startswith(f"{jenkinsfile}:{number}: 'pinotage deplo")


@pytest.mark.parametrize("shell, expected", [
    ("pinotage build --state s.json", [("build", "--state", "s.json")]),
    ("#!/bin/sh -eu\npinotage a\n# pinotage commented\npinotage b", [("a",), ("b",)]),
    ('if [ "$X" = true ]; then pinotage cluster box; fi', [("cluster", "box")]),
    ("pinotage build && pinotage push || echo pinotage no", [("build",), ("push",)]),
    ("pinotage status success \\\n  --description 'two words'", [("status", "success", "--description", "two words")]),
    ("echo pinotage; ./pinotage x; mypinotage y", []),
], ids=["one-call", "shebang-and-comments", "inside-if", "and-or-chains", "continued-line", "not-a-call"])
def test_pinotage_calls(shell, expected):
    assert jobs.pinotage_calls(shell) == expected


# --- normalising and planning -----------------------------------------------

SAVED_BY_JENKINS = """<?xml version='1.1' encoding='UTF-8'?>
<project>
  <actions/>
  <description>hello</description>
  <builders>
    <hudson.tasks.Shell plugin="shell@1.2">
      <command>pinotage build</command>
    </hudson.tasks.Shell>
  </builders>
</project>"""


@pytest.mark.parametrize("other, same", [
    ('<?xml version="1.0" encoding="utf-8"?>\n<project><actions/><description>hello</description><builders>'
     '<hudson.tasks.Shell plugin="shell"><command>pinotage build\n</command></hudson.tasks.Shell></builders></project>',
     True),
    (SAVED_BY_JENKINS.replace("plugin=\"shell@1.2\"", "plugin=\"shell@9.9\""), True),
    (SAVED_BY_JENKINS.replace("pinotage build", "pinotage build --state x"), False),
    (SAVED_BY_JENKINS.replace("<actions/>", "<actions/><disabled>true</disabled>"), False),
], ids=["layout-and-declaration", "plugin-version", "command-edited", "element-added"])
def test_normalise(other, same):
    assert (jobs.normalise(other) == jobs.normalise(SAVED_BY_JENKINS)) is same


OURS = (b'<?xml version="1.0" encoding="utf-8"?>\n<project><description>hello\nworld</description><keepDependencies>'
        b'false</keepDependencies><builders><hudson.tasks.Shell><command>a</command></hudson.tasks.Shell>'
        b'<hudson.tasks.Shell><command>b</command></hudson.tasks.Shell></builders></project>')


@pytest.mark.parametrize("live, state", [
    ("<project><keepDependencies>false</keepDependencies><description>hello \r\nworld  </description>"
     "<builders><hudson.tasks.Shell plugin='shell@1'><command>a</command></hudson.tasks.Shell>"
     "<hudson.tasks.Shell><command>b</command></hudson.tasks.Shell></builders><disabled>false</disabled></project>",
     "same"),
    ("<project><description>hello\nworld</description><keepDependencies>false</keepDependencies><builders>"
     "<hudson.tasks.Shell><command>b</command></hudson.tasks.Shell>"
     "<hudson.tasks.Shell><command>a</command></hudson.tasks.Shell></builders></project>", "changed"),
    ("<project><description>hello\nworld</description><keepDependencies>false</keepDependencies><builders>"
     "<hudson.tasks.Shell><command>a</command></hudson.tasks.Shell></builders></project>", "changed"),
    ("<project><description>hello\nworld</description><keepDependencies>false</keepDependencies><builders>"
     "<hudson.tasks.Shell><command>a</command></hudson.tasks.Shell><hudson.tasks.Shell class='x'><command>b"
     "</command></hudson.tasks.Shell></builders></project>", "changed"),
    ("<project><description>hello\nworld</description><keepDependencies><x/></keepDependencies><builders>"
     "<hudson.tasks.Shell><command>a</command></hudson.tasks.Shell><hudson.tasks.Shell><command>b</command>"
     "</hudson.tasks.Shell></builders></project>", "changed"),
    ("<project><description>hello\nworld</description><keepDependencies>false</keepDependencies><builders>"
     "<hudson.tasks.Shell><command>a</command></hudson.tasks.Shell><hudson.tasks.Shell><command>b</command>"
     "</hudson.tasks.Shell></builders><disabled>true</disabled></project>", "changed"),
], ids=["layout-crlf-field-order-plugin-default", "list-reordered", "item-missing", "attribute-added",
        "leaf-became-object", "field-set"])
def test_compare_agrees_with_the_canonical_lines(live, state):
    job = jobs.RenderedJob("j", OURS)
    drift = jobs.compare(job, live)
    assert drift.state == state
    assert (jobs.normalise(OURS) == jobs.normalise(live, ours=OURS)) is (state == "same")
    assert bool(drift.diff) is (state == "changed")


def test_plan_update_writes_only_what_differs(rendered):
    box, cluster = rendered["rebuild-box"], rendered["rebuild-cluster"]
    edited = cluster.xml.decode().replace("pinotage cluster rebuild", "pinotage cluster rebuild --dry-run")
    foreign = "<project><description>made by hand</description></project>"
    plan = jobs.plan_update([box, cluster, rendered["jobs-seed"]],
                            {"rebuild-box": box.xml.decode(), "rebuild-cluster": edited, "jobs-seed": None},
                            {"old-managed": box.xml.decode(), "hand-made": foreign}, delete_old=True)
    assert ([j.name for j in plan.create], [j.name for j in plan.reconfigure], plan.delete, plan.unchanged) == \
        (["jobs-seed"], ["rebuild-cluster"], ("old-managed",), ("rebuild-box",))


def test_a_pair_found_the_same_before_is_not_compared_again_and_any_other_is(rendered):
    from pipeline.jobs import verdicts

    box = rendered["rebuild-box"]
    edited = box.xml.decode().replace("<description>", "<description>edited in the UI ", 1)
    remembered = verdicts.key(box.xml, edited)  # as if an earlier update had judged this pair the same
    assert jobs.plan_update([box], {"rebuild-box": edited}, same_before={remembered}).unchanged == ("rebuild-box",)
    other = edited.replace("edited in the UI", "edited again")
    plan = jobs.plan_update([box], {"rebuild-box": other}, same_before={remembered})
    assert [job.name for job in plan.reconfigure] == ["rebuild-box"] and plan.same_pairs == frozenset()
    same = jobs.plan_update([box], {"rebuild-box": box.xml.decode()})
    assert same.same_pairs == {verdicts.key(box.xml, box.xml.decode())}


def test_the_remembered_pairs_survive_a_round_trip_and_a_damaged_file_is_ignored(tmp_path):
    from pipeline.jobs import verdicts

    environ = {"XDG_CACHE_HOME": str(tmp_path)}
    keys = {verdicts.key(b"<project/>", f"<project>{i}</project>") for i in range(3)}
    assert verdicts.load(environ) == frozenset()
    verdicts.save(environ, keys, frozenset())
    assert verdicts.load(environ) == keys
    assert verdicts.load({"HOME": str(tmp_path / "home")}) == frozenset()
    (tmp_path / "pinotage" / verdicts.FILE_NAME).write_bytes(b"x" * 33)
    assert verdicts.load(environ) == frozenset()
    (tmp_path / "a-file").write_text("")
    verdicts.save({"XDG_CACHE_HOME": str(tmp_path / "a-file")}, keys, frozenset())  # cannot write: no error
    assert len(list((tmp_path / "pinotage").iterdir())) == 1


def test_plan_update_deletes_nothing_unless_asked(rendered):
    box = rendered["rebuild-box"]
    plan = jobs.plan_update([box], {"rebuild-box": box.xml.decode()}, {"old-managed": box.xml.decode()})
    assert plan.delete == ()


# --- the CLI: render, check, bad YAML ----------------------------------------

def test_render_writes_one_file_per_job(tmp_path, environ, capsys):
    assert cli.main(["jobs", "render", "--jobs-dir", str(ROOT / "jobs"), "-o", str(tmp_path)], environ) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drift-check", "jobs-seed", "presentation",
                                                          "preview-prune", "rebuild-box", "rebuild-cluster"]
    ET.parse(tmp_path / "presentation")


@pytest.mark.parametrize("yaml_text, expected", [
    ("- job:\n    name: a\n  builders: [\n", "extra.yaml:4: not valid YAML"),
    ("- job:\n    name: a\n    project-type: spaceship\n", "extra.yaml:1: Unrecognized project-type: spaceship"),
    ("- job-template:\n    name: '{x}-job'\n- project:\n    name: p\n    jobs: ['{x}-job']\n",
     "Missing parameter: 'x'"),
    ("- job:\n    name: rebuild-box\n", "extra.yaml:1: Duplicate job: 'rebuild-box' (Previous job definition: "),
    ("just a string\n", "extra.yaml:1: the top level must be a list"),
], ids=["broken-yaml", "unknown-project-type", "missing-template-parameter", "duplicate-job", "not-a-list"])
def test_bad_job_yaml_is_one_line_naming_the_file(repo, environ, capsys, yaml_text, expected):
    (repo / "jobs" / "extra.yaml").write_text(yaml_text)
    code = cli.main(["jobs", "check", "--jobs-dir", str(repo / "jobs")], environ)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len([line for line in err if line.startswith("pinotage: error:")]) == 1, err
    assert expected in err[0] and (".yaml" in err[0]), err
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("yaml_text, expected", [
    ("- job:\n    name: a\n    builders:\n      - shell: !j2: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"\n",
     "a !j2: template reached for Python, which templates may not"),
    ("- job:\n    name: a\n    builders:\n      - shell: !j2: \"{{ x.y( }}\"\n",
     "a !j2: template does not render (its line 1): unexpected '}'"),
    ("- job:\n    name: a\n    builders:\n      - shell: !include-raw-verbatim: ../Jenkinsfile\n",
     "extra.yaml:4: '../Jenkinsfile' is outside the jobs folder"),
    ("- job:\n    name: a\n    builders:\n      - shell: !j2: \"{% include 'Jenkinsfile' %}\"\n",
     "a !j2: template does not render: 'Jenkinsfile' not found in search path"),
    ("- job:\n    name: ../../escaped\n", "extra.yaml: job name '../../escaped' is not allowed"),
    ("- job:\n    name: folder/job\n", "job name 'folder/job' is not allowed"),
    (b"- job:\n    name: \xff\n", "extra.yaml:2: the job YAML is not UTF-8 text"),
    ("- job:\n    name: a\n    name: b\n", "extra.yaml:3: duplicate key 'name' (first given on line 2)"),
    ("- job:\n    name: a\n    x: &a [1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"    {n}: &{n} [{', '.join(['*' + p] * 8)}]\n" for p, n in zip("abcdefghi", "bcdefghij")),
     "extra.yaml:12: more than 64 aliases"),
], ids=["j2-reaches-python", "j2-syntax-error", "include-outside-jobs", "j2-include-outside-jobs",
        "name-with-dotdot", "name-with-slash",
        "not-utf8", "duplicate-key", "alias-bomb"])
def test_jobs_render_as_data_only(repo, environ, capsys, monkeypatch, yaml_text, expected):
    monkeypatch.chdir(repo)  # JJB also searches the working folder, which holds the Jenkinsfile
    path = repo / "jobs" / "extra.yaml"
    path.write_bytes(yaml_text) if isinstance(yaml_text, bytes) else path.write_text(yaml_text)
    code = cli.main(["jobs", "render", "--jobs-dir", str(repo / "jobs"), "-o", str(repo / "out")], environ)
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err and "Traceback" not in err, err
    assert not (repo / "out").exists() and not (repo / "escaped").exists()


def test_check_exits_2_listing_each_problem(repo, environ, capsys):
    (repo / "jobs" / "extra.yaml").write_text(PR_JOB_WITH_CREDENTIAL + JOB_CALLING_MISSING_COMMAND)
    assert cli.main(["jobs", "check", "--jobs-dir", str(repo / "jobs")], environ) == 2
    err = capsys.readouterr().err
    assert err.count("pinotage: error:") == 2
    assert "sneaky-prs" in err and "deploy-everything" in err


def test_missing_jobs_dir_is_bad_input(tmp_path, environ, capsys):
    assert cli.main(["jobs", "render", "--jobs-dir", str(tmp_path / "nope")], environ) == 2
    assert f"{tmp_path / 'nope'}: no such folder" in capsys.readouterr().err


def test_help_does_not_import_jenkins_libraries():
    import subprocess
    import sys

    code = ("import sys; from pipeline import cli; cli.build_parser().format_help();"
            " print(sorted(m for m in ('jenkins', 'jenkins_jobs') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_render_matches_jenkins_jobs_test_but_for_the_managed_mark(rendered, tmp_path):
    import subprocess
    import sys

    jjb = Path(sys.executable).parent / "jenkins-jobs"
    subprocess.run([str(jjb), "--conf", "/dev/null", "test", "-o", str(tmp_path), str(ROOT / "jobs")],
                   check=True, capture_output=True)
    for name, job in rendered.items():
        ours = [line.replace("\n" + jobs.MANAGED_MARK.replace("<", "&lt;").replace(">", "&gt;"), "")
                for line in jobs.normalise(job.xml)]
        assert ours == jobs.normalise((tmp_path / name).read_bytes()), name
