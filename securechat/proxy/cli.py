"""``securechat proxy``: serve the OpenAI-compatible proxy on localhost with uvicorn."""

from __future__ import annotations

import argparse
import sys

from securechat.client.cli import client_options, config_from_args
from securechat.client.errors import ClientError
from securechat.client.sdk import SecureChatClient

__all__ = ["add_proxy_command"]


def _cmd_proxy(args: argparse.Namespace) -> int:
    import uvicorn

    from securechat.proxy.app import create_proxy_app
    from securechat.proxy.openai_common import MODEL_ID
    from securechat.proxy.origin import LOOPBACK_BINDS, allowed_hosts

    try:
        config = config_from_args(args)
        SecureChatClient(config).close()  # fail now, not on the first request, if a trust file is missing
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    hosts = allowed_hosts(args.host, args.allowed_host or ())
    if not hosts:
        print(
            f"error: listening on {args.host or 'every address'} needs --allowed-host NAME for each name clients"
            " reach the proxy by (a proxy that serves any Host can be driven by a DNS-rebinding page)",
            file=sys.stderr,
        )
        return 2
    if args.host not in LOOPBACK_BINDS:
        print(
            f"warning: listening on {args.host}: anyone who can reach it can use your tenant and read answers;"
            f" the proxy has no authentication of its own (serving Host: {', '.join(hosts)})",
            file=sys.stderr,
        )
    app = create_proxy_app(lambda: SecureChatClient(config), allowed_hosts=hosts)
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
    proxy.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="a name clients reach the proxy by, served beside the bound address (repeatable; needed for --host"
        " 0.0.0.0). Other Host headers are refused",
    )
    proxy.set_defaults(command=_cmd_proxy)
