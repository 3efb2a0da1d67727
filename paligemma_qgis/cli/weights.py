"""``python -m paligemma_qgis weights download|where|verify``: get and check vae-oid.npz.

Also ``add_vae_arguments(parser)`` (``--vae FILE``, ``--allow-custom-vae``) and
``codec_from_args(args)`` for the commands that decode or encode masks.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..core.errors import WeightsError
from ..core.model import weights as w


def add_vae_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --vae FILE and --allow-custom-vae to a command that needs the mask codec."""
    parser.add_argument(
        "--vae",
        metavar="FILE",
        default=None,
        help=f"mask codec weights {w.VAE_FILENAME} (default: ${w.VAE_ENV}, then {w.default_vae_path()})",
    )
    parser.add_argument(
        "--allow-custom-vae",
        action="store_true",
        help=f"accept a VAE file whose sha256 is not Google's {w.VAE_FILENAME}",
    )


def codec_from_args(args: argparse.Namespace, *, device: str | None = None):
    """Load the MaskCodec the --vae/--allow-custom-vae arguments point to (imports torch)."""
    from ..core.model.codec import MaskCodec

    path = w.find_vae(getattr(args, "vae", None))
    return MaskCodec.from_npz(path, device=device, allow_custom_vae=getattr(args, "allow_custom_vae", False))


def _download(args: argparse.Namespace) -> int:
    dest = Path(args.dest) if args.dest else w.default_vae_path()
    path = w.download_vae(dest, url=args.url, progress=not args.quiet, force=args.force)
    print(f"{path}  sha256 {w.VAE_SHA256}")
    return 0


def _where(args: argparse.Namespace) -> int:
    env = os.environ.get(w.VAE_ENV, "")
    print("Looks for the mask codec weights, in this order:")
    print("  1. --vae FILE on the command line")
    print(f"  2. ${w.VAE_ENV}: {env or '(not set)'}")
    print(f"  3. user cache: {w.default_vae_path()}")
    try:
        found = w.find_vae(None)
    except WeightsError as exc:
        print(f"Not found. {exc}")
        return 1
    print(f"Found: {found}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    path = Path(args.file)
    w.load_vae_arrays(path, allow_custom_vae=args.allow_custom_vae)
    digest = w.sha256_file(path)
    if digest == w.VAE_SHA256:
        print(f"{path}: OK, Google's {w.VAE_FILENAME} (sha256 {digest})")
    else:
        print(f"{path}: OK as a codec file, custom VAE (sha256 {digest}, Google's is {w.VAE_SHA256})")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "weights",
        help="download, locate and verify the mask codec weights (vae-oid.npz)",
        description="The 16 <seg> tokens of PaliGemma are decoded by Google's VQ-VAE, vae-oid.npz.",
    )
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    p = sub.add_parser("download", help=f"download {w.VAE_FILENAME} and check its sha256")
    p.add_argument("--dest", metavar="PATH", help=f"file or folder (default: {w.default_vae_path()})")
    p.add_argument("--force", action="store_true", help="replace an existing file with another checksum")
    p.add_argument("--url", help="download from this URL instead of Google's and Hugging Face's")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_download)

    p = sub.add_parser("where", help="show where the weights are looked for and what is found")
    p.set_defaults(func=_where)

    p = sub.add_parser("verify", help="check that FILE is a complete vae-oid.npz (arrays, shapes, sha256)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--allow-custom-vae", action="store_true", help="accept another checksum")
    p.set_defaults(func=_verify)
    return parser
