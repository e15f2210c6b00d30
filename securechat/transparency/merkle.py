"""RFC 6962 / RFC 9162 Merkle tree hashing: tree heads, inclusion proofs and consistency proofs.

Leaves and interior nodes are hashed with distinct one-byte prefixes (0x00, 0x01), so no interior node can be
passed off as a leaf (second preimage). Generation follows RFC 6962 section 2.1 (PATH and PROOF/SUBPROOF) over
the list of leaf hashes; verification follows the iterative algorithms of RFC 9162 sections 2.1.3.2 and
2.1.4.2. Generation recomputes subtree hashes from the leaf hashes, O(n) per call: fine for a release log of
thousands of entries, and it keeps this module free of any cache that could drift from the leaves.

Every verification failure, including malformed input, raises the one opaque ``InvalidProof``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

HASH_BYTES: Final = 32
MAX_PROOF_HASHES: Final = 64  # a tree of 2**63 leaves needs at most 63 (consistency) or 63 (inclusion) hashes
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"


class InvalidProof(ValueError):
    """A Merkle proof did not verify (or its input was malformed); deliberately carries no detail."""

    def __init__(self) -> None:
        super().__init__("invalid Merkle proof")


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over the given leaf hashes; the hash of the empty string for an empty tree."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _subtree_hash(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) for the tree of all given leaves, deepest sibling first."""
    if not 0 <= index < len(leaf_hashes):
        raise ValueError("leaf index outside the tree")
    proof: list[bytes] = []
    _path(leaf_hashes, index, 0, len(leaf_hashes), proof)
    return proof


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]) for the tree of all given leaves; empty when old_size is 0 or n."""
    if not 0 <= old_size <= len(leaf_hashes):
        raise ValueError("old size outside the tree")
    proof: list[bytes] = []
    if 0 < old_size < len(leaf_hashes):
        _subproof(leaf_hashes, old_size, 0, len(leaf_hashes), True, proof)
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` (a leaf hash) is leaf ``index`` of the tree of ``size`` leaves with head ``root``."""
    _check_hashes(leaf, root, *proof)
    if not 0 <= index < size:
        raise InvalidProof()
    fn, sn, r = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:  # the proof is longer than the path to the root
            raise InvalidProof()
        if fn & 1 or fn == sn:
            r = node_hash(sibling, r)
            while not fn & 1 and fn != 0:  # skip the levels where this node had no right sibling
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0 or not hmac.compare_digest(r, root):
        raise InvalidProof()


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of ``new_size`` leaves with head ``new_root`` extends the one of ``old_size``."""
    _check_hashes(old_root, new_root, *proof)
    if not 0 <= old_size <= new_size:
        raise InvalidProof()
    if old_size == new_size or old_size == 0:
        # Nothing to prove, so a proof is refused rather than ignored; equal sizes need equal heads and the
        # empty tree has exactly one head.
        expected_old = new_root if old_size == new_size else EMPTY_ROOT
        if proof or not hmac.compare_digest(old_root, expected_old):
            raise InvalidProof()
        return
    if not proof:
        raise InvalidProof()
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # the old tree is a complete subtree: its head is the proof's start
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            raise InvalidProof()
        if fn & 1 or fn == sn:
            fr = node_hash(node, fr)
            sr = node_hash(node, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, node)
        fn >>= 1
        sn >>= 1
    if sn != 0 or not (hmac.compare_digest(fr, old_root) & hmac.compare_digest(sr, new_root)):
        raise InvalidProof()


def _check_hashes(*hashes: bytes) -> None:
    if len(hashes) > MAX_PROOF_HASHES + 2 or any(len(value) != HASH_BYTES for value in hashes):
        raise InvalidProof()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): where RFC 6962 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_hash(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    if end - start == 1:
        return leaf_hashes[start]
    k = _split(end - start)
    return node_hash(_subtree_hash(leaf_hashes, start, start + k), _subtree_hash(leaf_hashes, start + k, end))


def _path(leaf_hashes: Sequence[bytes], m: int, start: int, end: int, out: list[bytes]) -> None:
    # m is relative to start; siblings are appended on the way back up, so the deepest comes first.
    if end - start == 1:
        return
    k = _split(end - start)
    if m < k:
        _path(leaf_hashes, m, start, start + k, out)
        out.append(_subtree_hash(leaf_hashes, start + k, end))
    else:
        _path(leaf_hashes, m - k, start + k, end, out)
        out.append(_subtree_hash(leaf_hashes, start, start + k))


def _subproof(leaf_hashes: Sequence[bytes], m: int, start: int, end: int, whole: bool, out: list[bytes]) -> None:
    # SUBPROOF(m, D[start:end], whole): ``whole`` is true while the old tree's head is a node the verifier
    # already knows, in which case that node is left out of the proof.
    if m == end - start:
        if not whole:
            out.append(_subtree_hash(leaf_hashes, start, end))
        return
    k = _split(end - start)
    if m <= k:
        _subproof(leaf_hashes, m, start, start + k, whole, out)
        out.append(_subtree_hash(leaf_hashes, start + k, end))
    else:
        _subproof(leaf_hashes, m - k, start + k, end, False, out)
        out.append(_subtree_hash(leaf_hashes, start, start + k))
