"""``securechat attest`` and ``securechat chat``, and the connection options every client command shares.

Options fall back to ``SECURECHAT_URL``, ``SECURECHAT_TENANT``, ``SECURECHAT_REGION`` and ``SECURECHAT_API_KEY``.
The API key is read from the environment or a file, never from argv (other local users can read argv).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from securechat.attestation import (
    AttestationError,
    KeyFileError,
    Platform,
    VerificationReport,
    load_manifest,
    load_release_public,
)
from securechat.attestation.offline import snp_evidence_from_files, tdx_evidence_from_files, verify_evidence
from securechat.client.config import ClientConfig
from securechat.client.errors import AttestationFailed, ClientError, ConfigError, describe_refusal
from securechat.client.keyring import Keyring
from securechat.client.sdk import SecureChatClient
from securechat.errors import InvalidCiphertext
from securechat.keys import Suite
from securechat.transparency import VerifiedRelease

__all__ = ["add_client_commands", "client_options", "config_from_args"]

# Short names for --suite; every name but the hybrid's is a classical, compatibility-only choice.
_SUITES = {"mlkem768x25519": Suite.HPKE_MLKEM768_X25519, "x25519": Suite.HPKE_X25519, "rsa": Suite.RSA_OAEP}


def client_options() -> argparse.ArgumentParser:
    """A parent parser with the connection and trust options (use as ``parents=[client_options()]``)."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("service and trust")
    group.add_argument("--url", help="service base URL (default: $SECURECHAT_URL or http://127.0.0.1:8000)")
    group.add_argument("--tenant", help="tenant id (default: $SECURECHAT_TENANT)")
    group.add_argument("--region", help="region (default: $SECURECHAT_REGION or us-west-1)")
    group.add_argument("--api-key-file", type=Path, help="file holding the API key (default: $SECURECHAT_API_KEY)")
    group.add_argument(
        "--token-file", type=Path, help="file holding an identity provider's token, a JWT (default: $SECURECHAT_TOKEN)"
    )
    group.add_argument(
        "--token-command",
        metavar="COMMAND",
        help="a command that prints a token, run again before it expires (default: $SECURECHAT_TOKEN_COMMAND)",
    )
    group.add_argument("--root-pub", type=Path, help="pinned platform root public key (default: <root path>.pub)")
    group.add_argument("--release-pub", type=Path, help="release public key (default: <release key path>.pub)")
    group.add_argument(
        "--manifest", type=Path, help="signed release manifest (default: ~/.config/securechat/manifest.json)"
    )
    group.add_argument(
        "--log-vkey-file",
        type=Path,
        help="pinned release log key: require the manifest in that log "
        "(default: $SECURECHAT_LOG_VKEY_FILE, or <log key path>.vkey if it exists)",
    )
    group.add_argument(
        "--witness-vkey-file",
        type=Path,
        action="append",
        help="a pinned witness key (repeat for several; default: $SECURECHAT_WITNESS_VKEY_FILES)",
    )
    group.add_argument(
        "--min-witnesses", type=int, help="cosignatures required among the pinned witnesses (default: all of them)"
    )
    group.add_argument("--log-state", type=Path, help="the newest accepted checkpoint (default: $SECURECHAT_LOG_STATE)")
    group.add_argument(
        "--snp-ark",
        type=Path,
        action="append",
        help="an extra SEV-SNP ARK to trust beside AMD's (repeatable): an emulated platform's ark.der, for development",
    )
    group.add_argument(
        "--suite",
        choices=sorted(_SUITES),
        action="append",
        help="a suite to seal with, in order of preference (repeat for several; default: mlkem768x25519, the"
        " post-quantum hybrid; x25519 and rsa are classical, for old deployments). The pinned manifest must allow"
        " it too",
    )
    group.add_argument("--timeout-s", type=float, help="HTTP connect/read timeout in seconds (default: 60)")
    group.add_argument("--max-age-s", type=float, help="oldest attestation document accepted (default: 60)")
    return parser


def config_from_args(args: argparse.Namespace) -> ClientConfig:
    api_key = _secret_file(args.api_key_file, "API key")
    token = _secret_file(args.token_file, "token")
    token_command = tuple(shlex.split(args.token_command)) if args.token_command else None
    return ClientConfig.from_env(
        os.environ,
        base_url=args.url,
        tenant_id=args.tenant,
        region=args.region,
        api_key=api_key,
        token=token,
        token_command=token_command,
        root_public_key_path=args.root_pub,
        release_public_key_path=args.release_pub,
        manifest_path=args.manifest,
        suites=tuple(_SUITES[name] for name in args.suite) if args.suite else None,
        timeout_s=args.timeout_s,
        max_age_s=args.max_age_s,
        log_vkey_path=args.log_vkey_file,
        witness_vkey_paths=tuple(args.witness_vkey_file) if args.witness_vkey_file else None,
        min_witnesses=args.min_witnesses,
        log_state_path=args.log_state,
        snp_ark_paths=tuple(args.snp_ark) if args.snp_ark else None,
    )


def _secret_file(path: Path | None, what: str) -> str | None:
    """A secret read from a file (never argv: other local users can read a process's arguments)."""
    if path is None:
        return None
    try:
        return path.expanduser().read_text().strip()
    except OSError:
        raise ClientError(f"cannot read the {what} file {path}") from None


def print_report(report: VerificationReport, region: str) -> None:
    print(f"region {region}: {len(report.verified)} verified, {len(report.refused)} refused")
    for worker in report.verified:
        expires = datetime.fromtimestamp(worker.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"verified {worker.worker_id}  keys expire {expires}")
        for key in worker.keys:
            print(f"  key      {key.key_id}  {key.suite.value}")
        for name, value in sorted(worker.registers.items()):
            print(f"  register {name:<8} {value}")
    for refusal in report.refused:
        print(f"refused  {describe_refusal(refusal)}")


def _cmd_attest(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        with SecureChatClient(config) as client:
            report = client.attest()
            release = client.release
    except AttestationFailed as failed:
        print_report(failed.report, failed.region)
        print(f"error: {failed}", file=sys.stderr)
        return 1
    print_release(release)
    print_report(report, config.region)
    return 0


def print_release(release: VerifiedRelease | None) -> None:
    if release is None:
        print("release log: not pinned (the manifest file alone is trusted; see --log-vkey-file)")
        return
    checkpoint = release.checkpoint
    cosigned = ", ".join(release.witnesses) or "no witness"
    print(f"release log: {checkpoint.origin}  entry {release.leaf_index} of {checkpoint.size}, cosigned by {cosigned}")


def _cmd_chat(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": prompt})
    try:
        with SecureChatClient(config_from_args(args), keyring=Keyring(args.keyring)) as client:
            stream = client.open_stream(
                messages,
                collection=args.collection,
                top_k=args.top_k,
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                seed=args.seed,
            )
            with stream:
                for piece in stream:
                    sys.stdout.write(piece)
                    sys.stdout.flush()
            citations = stream.final.extra.get("citations", []) if stream.final is not None else []
            names = _document_names(client, args.collection) if citations else {}
    except InvalidCiphertext:
        print("\nerror: the answer failed verification (tampered or truncated); it is incomplete", file=sys.stderr)
        return 1
    print()
    for citation in citations:
        print(f"[{citation['n']}] {describe_citation(citation, names)} ({citation['score']})")
        if citation.get("text"):
            print(f"    {' '.join(str(citation['text']).split())[:CITED_CHARS]}")
    return 0


CITED_CHARS = 160  # how much of each cited excerpt the CLI prints


def describe_citation(citation: dict[str, Any], names: dict[str, str]) -> str:
    """Where a cited excerpt is: file name (else document id), page, heading, as the CLI prints it."""
    parts = [names.get(str(citation["doc_id"])) or str(citation.get("title") or f"document {citation['doc_id']}")]
    if citation.get("page") is not None:
        parts.append(f"page {citation['page']}")
    if citation.get("heading"):
        parts.append(f'"{citation["heading"]}"')
    return ", ".join(parts)


def _document_names(client: SecureChatClient, collection_id: str | None) -> dict[str, str]:
    """Document ids to file names (sealed metadata, opened here); empty when they cannot be read."""
    if collection_id is None:
        return {}
    try:
        return {d.doc_id: d.filename for d in client.collections.documents(collection_id)}
    except ClientError:
        return {}


def _cmd_attest_verify(args: argparse.Namespace) -> int:
    """Verify one machine's raw evidence offline; print the verdict, the reason and the claims as JSON."""
    platform = Platform(args.platform)
    try:
        if platform is Platform.SEV_SNP:
            if args.vcek is None:
                raise ConfigError("--vcek is needed for SEV-SNP evidence (the VCEK or VLEK that signed it)")
            evidence = snp_evidence_from_files(args.evidence, args.vcek, args.chain)
        else:
            if args.collateral is None:
                raise ConfigError("--collateral is needed for a TDX quote (Intel's collateral, dcap-qvl's JSON)")
            evidence = tdx_evidence_from_files(args.evidence, args.collateral)
        policy = None
        if args.manifest is not None:
            signed = load_manifest(args.manifest)
            if args.release_pub is not None and not signed.verify(load_release_public(args.release_pub)):
                raise ConfigError(f"{args.manifest} is not signed by the release key {args.release_pub}")
            policy = signed.manifest.platforms
        report_data = bytes.fromhex(args.report_data) if args.report_data else None
        at = _parse_time(args.at)
    except (OSError, ValueError, KeyFileError) as error:
        raise ConfigError(f"cannot read the evidence or its inputs: {error}") from None
    try:
        claims = verify_evidence(
            platform, evidence, at=at, snp_arks=args.snp_ark or (), policy=policy, report_data=report_data
        )
    except AttestationError as refused:
        print(json.dumps({"verdict": "refused", "reason": refused.reason.value, "claims": None}, indent=1))
        return 1
    print(json.dumps({"verdict": "verified", "reason": None, "claims": claims.to_dict()}, indent=1))
    return 0


def _parse_time(value: str | None) -> float:
    """Unix seconds or an ISO 8601 time (UTC unless it says otherwise); now when absent."""
    if value is None:
        return time.time()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def add_client_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    options = client_options()
    attest = subparsers.add_parser(
        "attest",
        parents=[options],
        help="verify the region's workers and print each verdict (exit 1 if none pass); "
        "`attest verify` checks one machine's raw evidence offline",
    )
    attest.set_defaults(command=_cmd_attest)
    actions = attest.add_subparsers(dest="attest_action", metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="verify an SEV-SNP report or TDX quote offline against AMD's or Intel's roots; JSON out, exit 0 only "
        "when it verifies",
    )
    verify.add_argument("--evidence", type=Path, required=True, help="the raw SNP report (1,184 bytes) or TDX quote")
    verify.add_argument("--platform", choices=["sev-snp", "tdx"], default="sev-snp", help="(default: sev-snp)")
    verify.add_argument("--vcek", type=Path, help="sev-snp: the VCEK or VLEK that signed the report (DER or PEM)")
    verify.add_argument("--chain", type=Path, help="sev-snp: a PEM with the ASK/ASVK (the ARK is always AMD's own)")
    verify.add_argument("--collateral", type=Path, help="tdx: Intel's collateral (dcap-qvl's JSON)")
    verify.add_argument("--at", help="verification time: unix seconds or ISO 8601 (default: now)")
    verify.add_argument("--manifest", type=Path, help="a release manifest whose platform policy the claims must meet")
    verify.add_argument("--release-pub", type=Path, help="check --manifest's signature with this release key")
    verify.add_argument("--report-data", help="the 64 bytes (hex) the evidence must carry")
    verify.add_argument(
        "--snp-ark", type=Path, action="append", help="an extra ARK to trust (an emulated platform's; repeatable)"
    )
    verify.set_defaults(command=_cmd_attest_verify)

    chat = subparsers.add_parser(
        "chat", parents=[options], help="verify, seal a prompt, and stream the decrypted answer to stdout"
    )
    chat.add_argument("prompt", help='the prompt ("-" reads it from stdin)')
    chat.add_argument("--system", help="a system message before the prompt")
    chat.add_argument("--max-new-tokens", type=int, help="answer length limit (default: the worker's)")
    chat.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    chat.add_argument("--top-p", type=float, default=1.0)
    chat.add_argument("--seed", type=int)
    chat.add_argument("--collection", help="answer from this collection's documents (its key must be in the keyring)")
    chat.add_argument("--top-k", type=int, help="excerpts retrieved with --collection (default: 4)")
    chat.add_argument("--keyring", type=Path, help="keyring file (default: $SECURECHAT_KEYRING or ~/.config/...)")
    chat.set_defaults(command=_cmd_chat)
