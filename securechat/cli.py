"""The ``securechat`` command line: one ``_cmd_*`` function per subcommand, added in ``_build_parser``.

Operator commands live here (tiny model, platform root, release key, manifest); client commands (``attest``,
``chat``) in ``securechat.client.cli``, ``proxy`` in ``securechat.proxy.cli``, ``tenants`` in
``securechat.tenants.cli``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import ValidationError

from securechat.attestation import (
    KeyFileError,
    create_release_key,
    create_root,
    default_root_path,
    load_release_key,
    manifest_for_registers,
    root_id,
    save_manifest,
    sign_manifest,
)
from securechat.attestation.app_measurement import measure_app_worker
from securechat.attestation.manifest import default_release_key_path
from securechat.attestation.platforms import release_policy
from securechat.cli_exit import EXIT_USAGE, run
from securechat.client.cli import add_client_commands
from securechat.client.collections_cli import add_collection_commands
from securechat.client.config import DEFAULT_MANIFEST_PATH
from securechat.config import AppSettings
from securechat.proxy.cli import add_proxy_command
from securechat.tenants.cli import add_tenant_commands
from securechat.transparency.cli import add_log_commands

__all__ = ["main"]

_Command = Callable[[argparse.Namespace], int]
if TYPE_CHECKING:
    _Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def _cmd_build_tiny_model(args: argparse.Namespace) -> int:
    from securechat.tiny_model import build_tiny_model, tiny_model_dir

    print(build_tiny_model(tiny_model_dir(args.cache_dir), force=args.force))
    return 0


def _add_build_tiny_model(subparsers: _Subparsers) -> None:
    parser = subparsers.add_parser(
        "build-tiny-model",
        help="build the embedded tiny Qwen2 model into the cache and print its directory",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache root (default: $SECURECHAT_CACHE_DIR or ~/.cache/securechat)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if the model is already there")
    parser.set_defaults(command=_cmd_build_tiny_model)


def _cmd_root_init(args: argparse.Namespace) -> int:
    return _init_signing_key((args.path or default_root_path()).expanduser(), create_root, "root", args.force)


def _cmd_release_key_init(args: argparse.Namespace) -> int:
    path = (args.path or default_release_key_path()).expanduser()
    return _init_signing_key(path, create_release_key, "release key", args.force)


def _init_signing_key(path: Path, create: Callable[..., ed25519.Ed25519PublicKey], label: str, force: bool) -> int:
    """Create an Ed25519 key file (0600, ``.pub`` beside it) and print the id clients compare when pinning."""
    try:
        public = create(path, force=force)
    except KeyFileError as error:
        print(f"error: {path}: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{label} id: {root_id(public)}")  # root_id: the SPKI key id of any Ed25519 signing key
    print(f"public key: {path.with_name(path.name + '.pub')}  (clients pin this file)")
    return 0


def _add_key_commands(subparsers: _Subparsers) -> None:
    for name, command, what in (
        ("root", _cmd_root_init, "the simulated platform root that endorses workers"),
        ("release-key", _cmd_release_key_init, "the release key that signs manifests"),
    ):
        group = subparsers.add_parser(name, help=f"manage {what}")
        actions = group.add_subparsers(metavar="ACTION", required=True)
        init = actions.add_parser("init", help="create the key pair (private 0600) and print its id and .pub path")
        init.add_argument("--path", type=Path, help="private key path (default: $SECURECHAT_... or ~/.config/...)")
        init.add_argument("--force", action="store_true", help="replace an existing key")
        init.set_defaults(command=command)


def _load_settings(path: Path) -> AppSettings:
    """AppSettings from a Serve config (the app whose import path is ``deployments.app:build_app``) or bare args."""
    raw = yaml.safe_load(path.read_text()) or {}
    if isinstance(raw, dict) and "applications" in raw:
        apps = raw["applications"]
        ours = [app for app in apps if app.get("import_path") == "deployments.app:build_app"] or apps
        raw = ours[0].get("args") or {}
    return AppSettings.model_validate(raw)


def _cmd_manifest_build(args: argparse.Namespace) -> int:
    try:
        release_key = load_release_key(args.release_key)  # first: refuse before measuring a large model
        settings = _load_settings(args.config)
        region = args.region or settings.region_names[0]
        engine = settings.engine_for(region)
        # The same measurement deployments.worker.make_attester makes for this region's workers.
        registers = measure_app_worker(settings, region)
        platform = args.platform or settings.attestation.platform
        platforms = release_policy(
            platform,
            registers,
            snp_measurements=args.snp_measurement or (),
            snp_products=args.snp_product or (),
            snp_min_tcb=_tcb_floors(args.snp_min_tcb or ()),
            snp_allow_vlek=args.snp_allow_vlek,
            tdx_measurements=_tdx_measurements(args.tdx_mrtd or (), args.tdx_rtmr or ()),
            tdx_statuses=args.tdx_allow_status or (),
        )
        manifest = manifest_for_registers(
            args.name, args.release, registers, suites=settings.sealing.suites, platforms=platforms
        )
    except KeyError:
        print(f"error: region {args.region} is not in {args.config}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError, ValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if settings.attestation.debug:
        print(
            "warning: attestation.debug is on; verifiers refuse debug workers whatever the manifest says",
            file=sys.stderr,
        )
    classical = [suite.value for suite in settings.sealing.suites if not suite.post_quantum]
    if classical:
        print(
            f"warning: sealing.suites allows classical suites ({', '.join(classical)}): what clients seal with them"
            " can be opened by whoever recorded it once a quantum computer breaks them",
            file=sys.stderr,
        )
    out = (args.out or DEFAULT_MANIFEST_PATH).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_manifest(out, sign_manifest(manifest, release_key))
    print(f"manifest {manifest.name} {manifest.release} for region {region} ({engine.model}) -> {out}")
    for name, values in sorted(manifest.registers.items()):
        print(f"  {name:<8} {' '.join(sorted(values))}")
    print(f"  suites   {' '.join(suite.value for suite in manifest.suites)}")
    print(f"  platforms {json.dumps(manifest.platforms.to_dict(), sort_keys=True)}")
    if manifest.platforms.sev_snp is not None and "Milan" in manifest.platforms.sev_snp.min_tcb:
        print(
            "warning: this release accepts AMD Milan, whose chips' root seed can be extracted in software: "
            "the owner of a Milan host can forge its reports",
            file=sys.stderr,
        )
    if manifest.platforms.simulated:
        print("warning: this release accepts the simulated platform: no hardware protects its workers", file=sys.stderr)
    return 0


def _tcb_floors(items: Sequence[str]) -> dict[str, dict[str, int]]:
    """``LINE:FIELD=N`` flags as {line: {field: n}} (``--snp-min-tcb Genoa:snp=24``)."""
    floors: dict[str, dict[str, int]] = {}
    for item in items:
        product, _, change = item.partition(":")
        name, _, value = change.partition("=")
        if not product or not name or not value.isdigit():
            raise ValueError(f"--snp-min-tcb takes LINE:FIELD=NUMBER (Genoa:snp=24), not {item!r}")
        floors.setdefault(product, {})[name] = int(value)
    return floors


def _tdx_measurements(mrtds: Sequence[str], rtmrs: Sequence[str]) -> dict[str, list[str]] | None:
    """``--tdx-mrtd HEX`` and ``--tdx-rtmr N=HEX`` flags as the policy's measurement lists."""
    if not mrtds and not rtmrs:
        return None
    measurements: dict[str, list[str]] = {"mrtd": list(mrtds)} if mrtds else {}
    for item in rtmrs:
        index, _, value = item.partition("=")
        if index not in {"0", "1", "2", "3"} or not value:
            raise ValueError(f"--tdx-rtmr takes N=HEX with N in 0..3, not {item!r}")
        measurements.setdefault(f"rtmr{index}", []).append(value)
    return measurements


def _add_manifest(subparsers: _Subparsers) -> None:
    group = subparsers.add_parser("manifest", help="build signed release manifests")
    actions = group.add_subparsers(metavar="ACTION", required=True)
    build = actions.add_parser("build", help="measure this release as a worker would, sign it, save it")
    build.add_argument("--config", type=Path, default=Path("serve_config.yaml"), help="Serve config or app args")
    build.add_argument("--region", help="whose engine settings to measure (default: the first region)")
    build.add_argument("--out", type=Path, help="output (default: ~/.config/securechat/manifest.json)")
    build.add_argument("--name", default="securechat", help="manifest name (default: securechat)")
    build.add_argument("--release", default=_version(), help="release label (default: the package version)")
    build.add_argument("--release-key", type=Path, help="release private key (default: $SECURECHAT_RELEASE_KEY ...)")
    hardware = build.add_argument_group("the platform the release runs on (default: the config's attestation.platform)")
    hardware.add_argument("--platform", choices=["simulated", "emulated-sev-snp", "sev-snp", "tdx"])
    hardware.add_argument(
        "--snp-measurement",
        action="append",
        metavar="HEX",
        help="sev-snp: a launch measurement of the released image (repeatable; `sev-snp-measure --mode snp ...`)",
    )
    hardware.add_argument(
        "--snp-product",
        action="append",
        choices=["Milan", "Genoa", "Turin"],
        help="sev-snp: an AMD processor line to accept (repeatable; default Genoa and Turin, see "
        "docs/confidential-vms.md for why not Milan)",
    )
    hardware.add_argument(
        "--snp-min-tcb",
        action="append",
        metavar="LINE:FIELD=N",
        help="sev-snp: change one field of a line's shipped TCB floor (bootloader, tee, snp, microcode, fmc)",
    )
    hardware.add_argument("--snp-allow-vlek", action="store_true", help="sev-snp: accept VLEK-signed reports too")
    hardware.add_argument("--tdx-mrtd", action="append", metavar="HEX", help="tdx: an MRTD of the image (repeatable)")
    hardware.add_argument("--tdx-rtmr", action="append", metavar="N=HEX", help="tdx: an RTMR value the release expects")
    hardware.add_argument(
        "--tdx-allow-status", action="append", metavar="STATUS", help="tdx: TCB statuses to accept (default: UpToDate)"
    )
    build.set_defaults(command=_cmd_manifest_build)


def _version() -> str:
    try:
        return metadata.version("securechat")
    except metadata.PackageNotFoundError:
        return "dev"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="securechat",
        description="SecureChat tools.",
        epilog="Exit codes: 0 success, 1 the operation failed (refused, or failed verification), "
        "2 bad usage or local setup, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"securechat {_version()}")
    subparsers = parser.add_subparsers(metavar="COMMAND", required=True)
    _add_build_tiny_model(subparsers)
    _add_key_commands(subparsers)
    _add_manifest(subparsers)
    add_client_commands(subparsers)
    add_collection_commands(subparsers)
    add_proxy_command(subparsers)
    add_tenant_commands(subparsers)
    add_log_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)  # bad usage exits 2 here
    command: _Command = args.command
    return run(command, args)


if __name__ == "__main__":
    raise SystemExit(main())
