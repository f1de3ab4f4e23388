"""The CLI: a fast --help, one error boundary, honest placeholders."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from pipeline import __version__, cli

HEAVY = ("docker", "kubernetes", "jenkins", "jenkins_jobs", "git", "yaml", "requests",
         # the cluster's step tables are read for --help; the steps themselves load only to run one
         "pipeline.cluster.steps", "pipeline.cluster.executor", "pipeline.cluster.topology")


def pinotage(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          cwd=cwd, env=env)


def test_help_imports_no_heavy_library():
    probe = (
        "import io, json, sys, contextlib\n"
        "from pipeline import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        cli.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_version():
    done = pinotage("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"pinotage {__version__}"


def test_wrong_config_gives_one_line_per_error_and_exit_2(tmp_path):
    (tmp_path / "pinotage.yaml").write_text("image:\n  port: eighty\ndeplyo:\n  target: docker\n")
    done = pinotage("config", cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("pinotage: error:")]
    assert errors == [
        "pinotage: error: pinotage.yaml:2: image.port: expected a whole number, got 'eighty'",
        "pinotage: error: pinotage.yaml:3: unknown key 'deplyo' (did you mean 'deploy'?)",
    ]
    assert "Traceback" not in done.stderr


def test_usage_error_exits_2():
    done = pinotage("config", "--no-such-flag")
    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in done.stderr


def test_config_shows_sources_and_masks_secrets(tmp_path):
    (tmp_path / "pinotage.yaml").write_text("deploy:\n  namespace: slides\n")
    env = {"PATH": "/usr/bin:/bin", "PINOTAGE_REGISTRY_PASSWORD": "do-not-print-me",
           "PINOTAGE_IMAGE_PORT": "9090"}
    done = pinotage("config", "--set", "deploy.host_port=8181", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert rows["deploy.namespace"].endswith("pinotage.yaml:2")
    assert rows["image.port"].endswith("env PINOTAGE_IMAGE_PORT")
    assert rows["deploy.host_port"].endswith("flag --set deploy.host_port")
    assert rows["deploy.target"].endswith("default")
    assert "do-not-print-me" not in done.stdout + done.stderr
    assert "******** (set)" in rows["registry.password"]


def commands() -> list[tuple[list[str], str]]:
    """List every subcommand path with its help text."""
    found = []

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    found.append((prefix + [choice.dest], choice.help or ""))
                    walk(action._name_parser_map[choice.dest], prefix + [choice.dest])

    walk(cli.build_parser(), [])
    return found


def test_every_command_is_built_and_says_what_it_does():
    listed = commands()
    assert len(listed) > 20  # the run, image, jobs and cluster commands
    assert [path for path, help_text in listed if not help_text or "not available" in help_text] == []


@pytest.mark.parametrize("group", ["jobs", "cluster"])
def test_a_group_without_an_action_is_bad_input(group, capsys):
    assert cli.main([group], environ={}) == 2
    assert f"'pinotage {group}' needs an action" in capsys.readouterr().err


def test_an_unexpected_error_shows_a_redacted_traceback(monkeypatch, capsys):
    # Only bugs get tracebacks, and even a bug's traceback masks the secrets the process read.
    def broken(args, environ):
        from pipeline.config import secret

        raise ZeroDivisionError(f"a bug near {secret('github.token', environ)}")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0]._name_parser_map["config"].set_defaults(handler=broken)
    assert cli.main(["config"], environ={"PINOTAGE_GITHUB_TOKEN": "ghp_sekrit123"}) == 70
    err = capsys.readouterr().err
    assert "internal error (a bug in Pinotage" in err
    assert "Traceback" in err and "ZeroDivisionError: a bug near ****" in err
    assert "ghp_sekrit123" not in err
