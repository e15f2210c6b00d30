"""``securechat proxy``: serve the OpenAI-compatible proxy on localhost with uvicorn."""

from __future__ import annotations

import argparse
import sys

from securechat.client.cli import client_options, config_from_args
from securechat.client.errors import ClientError
from securechat.client.sdk import SecureChatClient

__all__ = ["add_proxy_command"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _cmd_proxy(args: argparse.Namespace) -> int:
    import uvicorn

    from securechat.proxy.app import LOOPBACK_HOSTS, create_proxy_app
    from securechat.proxy.schemas import MODEL_ID

    try:
        config = config_from_args(args)
        SecureChatClient(config).close()  # fail now, not on the first request, if a trust file is missing
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    loopback = args.host in _LOOPBACK
    if not loopback:
        print(
            f"warning: listening on {args.host}: anyone who can reach it can use your tenant and read answers;"
            " the proxy has no authentication of its own",
            file=sys.stderr,
        )
    app = create_proxy_app(lambda: SecureChatClient(config), allowed_hosts=LOOPBACK_HOSTS if loopback else ["*"])
    print(
        f"SecureChat proxy: base_url http://{args.host}:{args.port}/v1, model {MODEL_ID!r}, "
        f"forwarding to {config.base_url} region {config.region} (verified and sealed per request)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_proxy_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proxy = subparsers.add_parser(
        "proxy", parents=[client_options()], help="serve a local OpenAI-compatible API that seals every request"
    )
    proxy.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1; keep it local)")
    proxy.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    proxy.set_defaults(command=_cmd_proxy)
