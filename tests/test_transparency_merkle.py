"""RFC 6962 / RFC 9162 Merkle hashing and proofs against published known-answer vectors.

Sources (vector data only, hex copied verbatim):
- transparency-dev/merkle, proof/verify_test.go (``leaves``, ``roots``, ``inclusionProofs``,
  ``consistencyProofs``: the reference vectors of the original C++ Certificate Transparency log) and
  rfc6962/rfc6962_test.go (empty tree, empty leaf, leaf and node hashes);
- google/certificate-transparency, python/ct/crypto/merkle_test.py (leaf and node hashes, the same
  consistency vectors, and an inclusion proof taken from a production CT log: leaf 848049 of 3630887).
The corruption probes mirror the kinds transparency-dev/merkle tries (wrong index or size, extra, missing,
reordered or flipped hashes); the expectations are ours.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from securechat.transparency.merkle import (
    EMPTY_ROOT,
    InvalidProof,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)


def h(hex_string: str) -> bytes:
    return bytes.fromhex(hex_string)


LEAVES = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
# ROOTS[n - 1]: the root of the tree of the first n leaves.
ROOTS = [
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# (0-based leaf index, tree size, proof); the Go file numbers leaves from 1.
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
# (old size, new size, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")
LEAF_HASHES = [leaf_hash(leaf) for leaf in LEAVES]


def test_hashes_match_rfc6962_vectors() -> None:
    assert h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == EMPTY_ROOT
    assert root_hash([]) == EMPTY_ROOT
    assert leaf_hash(b"") == h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert leaf_hash(b"L123456") == h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
    assert node_hash(b"N123", b"N456") == h("aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb")
    assert leaf_hash(h("101112131415161718191a1b1c1d1e1f")) == h(
        "3bfb960453ebaebf33727da7a1f4db38acc051d381b6da20d6d4e88f0eabfd7a"
    )
    assert node_hash(
        h("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
        h("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"),
    ) == h("1a378704c17da31e2d05b6d121c2bb2c7d76f6ee6fa8f983e596c2d034963c57")


def test_domain_separation_keeps_nodes_and_leaves_apart() -> None:
    left, right = leaf_hash(b"Hello"), leaf_hash(b"World")
    assert node_hash(left, right) != leaf_hash(left + right)
    assert node_hash(left, right) != node_hash(right, left)


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_vectors(size: int) -> None:
    assert root_hash(LEAF_HASHES[:size]) == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_vectors_and_verify(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(LEAF_HASHES[:size], index) == proof
    verify_inclusion(LEAF_HASHES[index], index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old_size", "new_size", "proof"), CONSISTENCY)
def test_consistency_proofs_match_vectors_and_verify(old_size: int, new_size: int, proof: list[bytes]) -> None:
    assert consistency_proof(LEAF_HASHES[:new_size], old_size) == proof
    verify_consistency(old_size, new_size, ROOTS[old_size - 1], ROOTS[new_size - 1], proof)


def _flip(proof: list[bytes], position: int, bit: int) -> list[bytes]:
    changed = list(proof)
    changed[position] = bytes([changed[position][0] ^ bit]) + changed[position][1:]
    return changed


def _inclusion_probes(index: int, size: int, proof: list[bytes]) -> list[tuple[str, Callable[[], None]]]:
    leaf, root = LEAF_HASHES[index], ROOTS[size - 1]

    def probe(i: int, n: int, path: list[bytes], leaf_: bytes = leaf, root_: bytes = root) -> Callable[[], None]:
        return lambda: verify_inclusion(leaf_, i, n, path, root_)

    probes = [
        ("index - 1", probe(index - 1, size, proof)),
        ("index + 1", probe(index + 1, size, proof)),
        ("index ^ 2", probe(index ^ 2, size, proof)),
        ("size * 2", probe(index, size * 2, proof)),
        ("size // 2", probe(index, size // 2, proof)),
        ("wrong leaf", probe(index, size, proof, leaf_=leaf_hash(b"WrongLeaf"))),
        ("short leaf", probe(index, size, proof, leaf_=b"WrongLeaf")),
        ("empty root", probe(index, size, proof, root_=EMPTY_ROOT)),
        ("random root", probe(index, size, proof, root_=SOME_HASH)),
        ("trailing empty", probe(index, size, [*proof, b""])),
        ("trailing root", probe(index, size, [*proof, root])),
        ("preceding empty", probe(index, size, [b"", *proof])),
        ("preceding root", probe(index, size, [root, *proof])),
    ]
    probes += [(f"flipped proof[{i}]", probe(index, size, _flip(proof, i, 8))) for i in range(len(proof))]
    if proof:
        probes.append(("removed last", probe(index, size, proof[:-1])))
    if len(proof) > 1:
        probes.append(("inserted", probe(index, size, [proof[0], SOME_HASH, *proof[1:]])))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_corrupted_inclusion_proofs_are_refused(index: int, size: int, proof: list[bytes]) -> None:
    accepted = []
    for name, check in _inclusion_probes(index, size, proof):
        try:
            check()
        except InvalidProof:
            continue
        accepted.append(name)
    assert accepted == []


@pytest.mark.parametrize(("old_size", "new_size", "proof"), [vector for vector in CONSISTENCY if vector[2]])
def test_corrupted_consistency_proofs_are_refused(old_size: int, new_size: int, proof: list[bytes]) -> None:
    old, new = ROOTS[old_size - 1], ROOTS[new_size - 1]
    probes: list[tuple[str, int, int, bytes, bytes, list[bytes]]] = [
        ("old - 1", old_size - 1, new_size, old, new, proof),
        ("old + 1", old_size + 1, new_size, old, new, proof),
        ("old ^ 2", old_size ^ 2, new_size, old, new, proof),
        ("new * 2", old_size, new_size * 2, old, new, proof),
        ("new // 2", old_size, new_size // 2, old, new, proof),
        ("wrong old root", old_size, new_size, SOME_HASH, new, proof),
        ("wrong new root", old_size, new_size, old, SOME_HASH, proof),
        ("short root", old_size, new_size, b"WrongRoot", new, proof),
        ("swapped roots", old_size, new_size, new, old, proof),
        ("empty proof", old_size, new_size, old, new, []),
        ("trailing empty", old_size, new_size, old, new, [*proof, b""]),
        ("trailing old root", old_size, new_size, old, new, [*proof, old]),
        ("trailing new root", old_size, new_size, old, new, [*proof, new]),
        ("preceding empty", old_size, new_size, old, new, [b"", *proof]),
        ("preceding old root", old_size, new_size, old, new, [old, *proof]),
        ("preceding new root", old_size, new_size, old, new, [new, *proof]),
        ("preceding proof[0]", old_size, new_size, old, new, [proof[0], *proof]),
        ("truncated", old_size, new_size, old, new, proof[:-1]),
    ]
    probes += [(f"flipped proof[{i}]", old_size, new_size, old, new, _flip(proof, i, 16)) for i in range(len(proof))]
    accepted = []
    for name, m, n, root_m, root_n, path in probes:
        try:
            verify_consistency(m, n, root_m, root_n, path)
        except InvalidProof:
            continue
        accepted.append(name)
    assert accepted == []


def test_inclusion_proof_from_a_production_ct_log() -> None:
    # google/certificate-transparency merkle_test.py: a certificate entry of a live log in 2013.
    path = [
        h(value)
        for value in (
            "1a208aeebcd1b39fe2de247ee8db9454e1e93a312d206b87f6ca9cc6ec6f1ddd",
            "0a1b78b383f580856f433c01a5741e160d451c185910027f6cc9f828687a40c4",
            "3d1745789bc63f2da15850de1c12a5bf46ed81e1cc90f086148b1662e79aab3d",
            "9095b61e14d8990acf390905621e62b1714fb8e399fbb71de5510e0aef45affe",
            "0a332b91b8fab564e6afd1dd452449e04619b18accc0ff9aa8393cd4928451f2",
            "2336f0181d264aed6d8f3a6507ca14a8d3b3c3a23791ac263e845d208c1ee330",
            "b4ce56e300590500360c146c6452edbede25d4ed83919278749ee5dbe178e048",
            "933f6ddc848ea562e4f9c5cfb5f176941301dad0c6fdb9d1fbbe34fac1be6966",
            "b95a6222958a86f74c030be27c44f57dbe313e5e7c7f4ffb98bcbd3a03bb52f2",
            "daeeb3ce5923defd0faeb8e0c210b753b85b809445d7d3d3cd537a9aabaa9c45",
            "7fadd0a13e9138a2aa6c3fdec4e2275af233b94812784f66bcca9aa8e989f2bc",
            "1864e6ba3e32878610546539734fb5eeae2529991f130c575c73a7e25a2a7c56",
            "12842d1202b1dc6828a17ab253c02e7ce9409b5192430feba44189f39cc02d66",
            "29af64b16fa3053c13d02ac63aa75b23aa468506e44c3a2315edc85d2dc22b11",
            "b527b99934a0bd9edd154e449b0502e2c499bba783f3bc3dfe23364b6b532009",
            "4584db8ae8e351ace08e01f306378a92bfd43611714814f3d834a2842d69faa8",
            "86a9a41573b0d6e4292f01e93243d6cc65b30f06606fc6fa57390e7e90ed580f",
            "a88b98fbe84d4c6aae8db9d1605dfac059d9f03fe0fcb0d5dff1295dacba09e6",
            "06326dc617a6d1f7021dc536026dbfd5fffc6f7c5531d48ef6ccd1ed1569f2a1",
            "f41fe8fdc3a2e4e8345e30216e7ebecffee26ff266eeced208a6c2a3cf08f960",
            "40cf5bde8abb76983f3e98ba97aa36240402975674e120f234b3448911090f8d",
            "b3222dc8658538079883d980d7fdc2bef9285344ea34338968f736b04aeb387a",
        )
    ]
    leaf = h("7a395c866d5ecdb0cccb623e011dbc392cd348d1d1d72776174e127a24b09c78")
    root = h("78316a05c9bcf14a3a4548f5b854a9adfcd46a4c034401b3ce7eb7ac2f1d0ecb")
    verify_inclusion(leaf, 848049, 3630887, path, root)
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf, 848049, 3630887, path, bytes(32))
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf, 848049 + 2 ** (len(path) + 1), 3630887, path, root)
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf, 848049, 3630887, _flip(path, 21, 1), root)


def test_every_generated_proof_verifies_and_no_other_leaf_passes() -> None:
    hashes = [leaf_hash(bytes([value])) for value in range(33)]
    for size in range(1, len(hashes) + 1):
        root = root_hash(hashes[:size])
        for index in range(size):
            proof = inclusion_proof(hashes[:size], index)
            verify_inclusion(hashes[index], index, size, proof, root)
            with pytest.raises(InvalidProof):
                verify_inclusion(hashes[(index + 1) % len(hashes)], index, size, proof, root)
        for old_size in range(1, size + 1):
            proof = consistency_proof(hashes[:size], old_size)
            verify_consistency(old_size, size, root_hash(hashes[:old_size]), root, proof)


def test_trivial_consistency_cases_are_exact() -> None:
    root = ROOTS[2]
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 3, EMPTY_ROOT, root, [])
    verify_consistency(3, 3, root, root, [])
    refused = [
        (0, 3, SOME_HASH, root, []),  # the empty tree has one head
        (0, 3, EMPTY_ROOT, root, [root]),  # nothing to prove, so no proof
        (3, 3, root, ROOTS[3], []),  # same size, another head: a fork
        (3, 3, root, root, [root]),
        (3, 2, root, ROOTS[1], []),  # time runs one way
        (1, 2, ROOTS[0], ROOTS[1], []),
    ]
    for old_size, new_size, old, new, proof in refused:
        with pytest.raises(InvalidProof):
            verify_consistency(old_size, new_size, old, new, proof)


def test_out_of_range_requests_are_caller_errors() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(LEAF_HASHES, 8)
    with pytest.raises(ValueError):
        inclusion_proof([], 0)
    with pytest.raises(ValueError):
        consistency_proof(LEAF_HASHES, 9)
    assert consistency_proof(LEAF_HASHES, 0) == [] and consistency_proof(LEAF_HASHES, 8) == []
    with pytest.raises(InvalidProof):
        verify_inclusion(LEAF_HASHES[0], 0, 1, [SOME_HASH] * 70, ROOTS[0])  # absurdly long proofs are refused
