"""The Jenkins double writes a saved config.xml as Jenkins' XStream does; Pinotage's compare sees through it."""

from __future__ import annotations

import pytest

from pipeline import jobs
from tests.fakes.jenkins.xstream import saved_form

PLUGINS = {"workflow-job": "1400.v7", "workflow-cps": "3894.v3", "git": "5.2.2", "timestamper": "1.26"}

PIPELINE = b"""<?xml version="1.0" encoding="utf-8"?>
<!-- written by a tool -->
<flow-definition>
  <description>ship it</description>
  <definition class="org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition">
    <script>sh 'echo "a" &amp;&amp; b'&#13;\n</script>
    <sandbox>true</sandbox>
  </definition>
  <actions />
  <properties></properties>
</flow-definition>"""


def test_saved_form_is_what_xstream_writes():
    saved = saved_form(PIPELINE, PLUGINS)
    assert saved == """<?xml version='1.1' encoding='UTF-8'?>
<flow-definition plugin="workflow-job@1400.v7">
  <actions/>
  <description>ship it</description>
  <keepDependencies>false</keepDependencies>
  <properties/>
  <definition class="org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition" plugin="workflow-cps@3894.v3">
    <script>sh &apos;echo &quot;a&quot; &amp;&amp; b&apos;&#xd;
</script>
    <sandbox>true</sandbox>
  </definition>
  <disabled>false</disabled>
</flow-definition>"""


@pytest.mark.parametrize("xml, expected", [
    (b"<project><description/></project>", "<description></description>"),
    (b"<project><scm class='hudson.plugins.git.GitSCM'><userRemoteConfigs><hudson.plugins.git.UserRemoteConfig>"
     b"<url>u</url></hudson.plugins.git.UserRemoteConfig></userRemoteConfigs></scm></project>",
     '<scm class="hudson.plugins.git.GitSCM" plugin="git@5.2.2">\n    <userRemoteConfigs>\n'
     "      <hudson.plugins.git.UserRemoteConfig>\n"),
    (b"<project><buildWrappers><hudson.plugins.timestamper.TimestamperBuildWrapper plugin='timestamper'/>"
     b"</buildWrappers></project>", '<hudson.plugins.timestamper.TimestamperBuildWrapper plugin="timestamper@1.26"/>'),
    (b"<project><owner class='org.jenkinsci.plugins.workflow.job.WorkflowJob' reference='../..' plugin='x@1'/></project>",
     '<owner class="org.jenkinsci.plugins.workflow.job.WorkflowJob" reference="../.."/>'),
    (b"<project><builders><hudson.tasks.Shell plugin='shell@1'><command>x</command></hudson.tasks.Shell></builders>"
     b"</project>", "<hudson.tasks.Shell>\n"),
    (b"<project><zzz>kept</zzz><builders/><actions/></project>", "<builders/>\n  <zzz>kept</zzz>\n</project>"),
    (b"<project><builders/><actions/></project>", "<project>\n  <actions/>\n  <keepDependencies>false"),
], ids=["empty-string-field-open-and-closed", "plugin-on-a-plugin-class-not-on-its-own-children",
        "plugin-version-filled-in", "no-plugin-on-a-reference", "core-class-loses-a-posted-plugin",
        "unknown-fields-after-known-ones", "known-fields-in-class-order-primitives-filled-in"])
def test_saved_form_details(xml, expected):
    assert expected in saved_form(xml, PLUGINS)


@pytest.mark.parametrize("edit", [
    lambda x: x.replace(b"ship it", b"ship it now"),
    lambda x: x.replace(b"<sandbox>true</sandbox>", b"<sandbox>false</sandbox>"),
    lambda x: x.replace(b"<sandbox>true</sandbox>", b""),
    lambda x: x.replace(b'class="org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition"',
                        b'class="org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition"'),
], ids=["text", "value", "field-removed", "class-changed"])
def test_a_real_change_survives_the_round_trip(edit):
    job = jobs.RenderedJob("p", PIPELINE)
    assert jobs.compare(job, saved_form(PIPELINE, PLUGINS)).state == "same"
    assert jobs.compare(job, saved_form(edit(PIPELINE), PLUGINS)).state == "changed"


def test_the_order_of_a_list_is_a_change_the_order_of_fields_is_not():
    builders = (b"<project><description>d</description><builders><hudson.tasks.Shell><command>a</command>"
                b"</hudson.tasks.Shell><hudson.tasks.BatchFile><command>b</command></hudson.tasks.BatchFile>"
                b"</builders></project>")
    swapped_fields = builders.replace(b"<description>d</description>", b"").replace(
        b"</builders>", b"</builders><description>d</description>")
    swapped_builders = (b"<project><description>d</description><builders><hudson.tasks.BatchFile><command>b"
                        b"</command></hudson.tasks.BatchFile><hudson.tasks.Shell><command>a</command>"
                        b"</hudson.tasks.Shell></builders></project>")
    job = jobs.RenderedJob("p", builders)
    assert jobs.compare(job, swapped_fields.decode()).state == "same"
    assert jobs.compare(job, swapped_builders.decode()).state == "changed"
    strings = b"<project><jobNames><string>a</string><string>b</string></jobNames></project>"
    assert jobs.compare(jobs.RenderedJob("p", strings), strings.replace(b">a<", b">c<").replace(b">b<", b">a<")
                        .replace(b">c<", b">b<").decode()).state == "changed"


def test_saving_twice_changes_nothing():
    once = saved_form(PIPELINE, PLUGINS)
    assert saved_form(once, PLUGINS) == once


@pytest.mark.parametrize("live_edit, state", [
    (lambda x: x, "same"),
    (lambda x: x.replace("<disabled>false</disabled>", "<disabled>true</disabled>"), "changed"),
], ids=["filled-in-default", "disabled-in-the-ui"])
def test_a_field_jenkins_fills_in_on_load_is_no_change(live_edit, state):
    sent = b"<flow-definition><description>d</description></flow-definition>"
    live = saved_form(sent, PLUGINS)
    assert "<keepDependencies>false</keepDependencies>" in live and "<disabled>false</disabled>" in live
    assert jobs.compare(jobs.RenderedJob("p", sent), live_edit(live)).state == state
