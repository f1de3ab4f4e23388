"""The image phases: tag policy, build, smoke test, push. [The image issue fills these in.]

The run issue's runner calls exactly these functions:

- ``tags_for(context, config) -> tuple[str, ...]``: the tags for this build, first the primary one;
- ``find_pushed(config, context, credentials) -> Image | None``: the registry already holds this
  commit's tag (asked through the registry API): return it with its digest, so build and push skip;
- ``build(client, config, context, *, progress) -> Image``;
- ``smoke(client, config, image, *, progress) -> None``: raises ``SmokeFailed`` (a PinotageError);
- ``push(client, config, image, credentials, *, progress) -> Image`` with the digest.

``credentials`` is ``registry.Credentials | None``, read only by the phases that push.
"""
