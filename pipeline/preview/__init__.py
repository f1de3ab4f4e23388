"""Previews of same-repository pull requests: one Deployment and Service per PR in one namespace.

- ``render``: pure: a preview's name, its Deployment and Service from ``deploy.manifest``, what a
  live Deployment says about its preview, and which previews are stale;
- ``cluster``: apply (then gate), list and delete previews with the preview deployer's rights;
- ``local``: ``pinotage run --preview``: the checkout served on its own port beside the local app.
- ``local``: ``pinotage run --preview``: the branch served on its own port beside the local app.

Which builds get one is the plan's decision (``context.plan_for``): a fork never does, and then
nothing here runs and no credential is read.
"""
