"""The errors Pinotage expects; anything else reaching the CLI is a bug.

Each class also inherits the builtin it matches, so callers that know nothing
about Pinotage can still catch ``ValueError`` or ``TimeoutError``.
"""

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class PinotageError(Exception):
    """Report an expected failure: one line for the user, plus a hint."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """Return what the CLI prints, one problem a line."""
        return [self.message]


class BadInput(PinotageError, ValueError):
    """Bad input from the user: a file, a field, a flag or a value."""

    exit_code = EXIT_BAD_INPUT


class JobsCheckFailed(BadInput):
    """``pinotage jobs check`` found problems; each is one line."""

    def __init__(self, problems: list[str]):
        super().__init__(f"{len(problems)} problems in the jobs and the Jenkinsfile",
                         hint="fix them in jobs/ or the Jenkinsfile, then run 'pinotage jobs check' again")
        self.problems = list(problems)

    def lines(self) -> list[str]:
        return list(self.problems)


class ConfigError(BadInput):
    """One or more problems in the configuration, all reported together."""

    def __init__(self, problems: list[str], *, hint: str = ""):
        super().__init__("; ".join(problems), hint=hint)
        self.problems = list(problems)

    def lines(self) -> list[str]:
        return list(self.problems)


class CommandFailed(PinotageError, RuntimeError):
    """An external command exited non-zero or timed out."""

    def __init__(self, argv: list[str], returncode: int | None, output_tail: str, *, hint: str = ""):
        what = "timed out" if returncode is None else f"exited {returncode}"
        tail = f": {output_tail.strip().splitlines()[-1]}" if output_tail.strip() else ""
        super().__init__(f"command {argv[0]!r} {what}{tail}", hint=hint)
        self.argv = argv
        self.returncode = returncode
        self.output_tail = output_tail


class DeployRefused(PinotageError):
    """A deploy that must not happen, such as one older than what is live."""


class UnknownRelease(DeployRefused, BadInput):
    """A rollback named a release the ledger holds no successful deploy of (exit 2; nothing tried)."""


class LedgerWriteFailed(PinotageError, OSError):
    """The ledger file could not take a record (a full disk, a folder this user may not write)."""


class DeployLocked(PinotageError, TimeoutError):
    """Another deploy held the deploy lock for longer than the lock deadline."""


class RegistryError(PinotageError, ConnectionError):
    """The registry refused or failed a request."""


class AuthError(RegistryError, PermissionError):
    """Credentials were refused; retrying cannot help."""


class BuildFailed(PinotageError, RuntimeError):
    """An image build failed: names the failing step and keeps the last lines of its output."""

    def __init__(self, message: str, *, step: str = "", output_tail: tuple[str, ...] = (), hint: str = ""):
        super().__init__(message, hint=hint)
        self.step = step
        self.output_tail = tuple(output_tail)

    def lines(self) -> list[str]:
        return [self.message] + [f"  | {line}" for line in self.output_tail]


class SmokeFailed(PinotageError, RuntimeError):
    """The built image did not pass its smoke test; keeps the last lines of the container's log."""

    def __init__(self, message: str, *, log_tail: tuple[str, ...] = (), hint: str = ""):
        super().__init__(message, hint=hint)
        self.log_tail = tuple(log_tail)

    def lines(self) -> list[str]:
        return [self.message] + [f"  | {line}" for line in self.log_tail]


class PushFailed(RegistryError):
    """A push the registry did not accept; ``attempts`` says how many were made."""

    def __init__(self, message: str, *, attempts: int = 1, hint: str = ""):
        super().__init__(message, hint=hint)
        self.attempts = attempts


class DeployFailed(PinotageError):
    """A deploy (or a rollback) failed its gate, with what the runner records of it.

    ``rolled_back`` says whether the previous release serves again; ``returned_to`` is that
    release (a ``pipeline.state.Release``) and ``revision`` the target's revision it runs as.
    ``attempted`` is the release the failed attempt tried to put live, when the target chose it
    (a rollback); a deploy's is the one the runner asked for.
    """

    def __init__(self, message: str, *, rolled_back: bool, hint: str = "", returned_to=None,
                 revision: str = "", attempted=None):
        super().__init__(message, hint=hint)
        self.rolled_back = rolled_back
        self.returned_to = returned_to
        self.revision = revision
        self.attempted = attempted


class ClusterError(PinotageError, ConnectionError):
    """The Kubernetes API server refused or failed a request the deploy needed."""


class GithubError(PinotageError, ConnectionError):
    """GitHub refused or did not answer a commit status request."""


class JenkinsError(PinotageError, ConnectionError):
    """Jenkins refused or did not answer a request."""


class ClusterCheckFailed(PinotageError, RuntimeError):
    """The cluster is not in the state a step needs, or its smoke test failed."""
