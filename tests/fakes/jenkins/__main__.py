"""Serve the Jenkins double on 127.0.0.1 until interrupted; print its URL first."""

from __future__ import annotations

import argparse

from tests.fakes.jenkins.server import FakeJenkins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.jenkins", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--user", default="", help="require basic auth as this user (an administrator)")
    parser.add_argument("--token", default="", help="the user's API token")
    parser.add_argument("--crumbs", action="store_true",
                        help="require a CSRF crumb on a POST, except (as Jenkins 2.96+) from an API-token request")
    parser.add_argument("--crumbs-for-tokens", action="store_true",
                        help="with --crumbs: require it from API-token requests too")
    parser.add_argument("--controller-executors", type=int, default=2, help="executors on the built-in node")
    args = parser.parse_args(argv)
    if bool(args.user) != bool(args.token):
        parser.error("--user and --token go together")
    if args.crumbs_for_tokens and not args.crumbs:
        parser.error("--crumbs-for-tokens goes with --crumbs")
    fake = FakeJenkins(user=args.user, token=args.token, crumbs=args.crumbs, crumbs_for_tokens=args.crumbs_for_tokens,
                       port=args.port, controller_executors=args.controller_executors)
    print(fake.url, flush=True)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
