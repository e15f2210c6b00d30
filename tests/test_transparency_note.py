"""C2SP signed notes, verifier keys, cosignatures and checkpoints against published vectors.

Sources (vector data only):
- golang/mod, sumdb/note/note_test.go: the PeterNeumann and EnochRoot keys, the signed "cryptography" note,
  and the malformed notes and keys it refuses (Go's note package is the reference signed-note implementation);
- transparency-dev/formats, note/note_cosigv1_test.go: cosignature v1 verifier keys and a cosignature whose
  timestamp is 1727964367;
- C2SP signed-note, tlog-checkpoint and tlog-cosignature specs: their example note, checkpoint and cosigned
  checkpoint (its cosignature's timestamp is the spec's ``time 1679315147``).
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.transparency import Checkpoint, InvalidNote, NoteSigner, NoteVerifier, SignatureType
from securechat.transparency.note import (
    NoteSignature,
    format_note,
    parse_note,
    parse_signature_line,
    parse_signature_lines,
)
from securechat.transparency.note_keys import cosignature_timestamp, key_id, verified_keys

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"

CHECKPOINT_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
COSIGNED_CHECKPOINT = (
    CHECKPOINT_TEXT
    + "\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo"
    "+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0"
    "xUe+mbIUBkBIfZ+qnA==\n"
)
SPEC_NOTE = (
    "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n"
    "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3"
    "ZekRwNtIc=\n"
)


def peter_signer() -> NoteSigner:
    blob = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert blob[0] == SignatureType.ED25519
    return NoteSigner("PeterNeumann", SignatureType.ED25519, ed25519.Ed25519PrivateKey.from_private_bytes(blob[1:]))


def test_vkeys_parse_to_their_published_key_ids_and_round_trip() -> None:
    peter = NoteVerifier.from_vkey(PETER_VKEY)
    assert (peter.name, peter.signature_type, peter.key_id) == ("PeterNeumann", SignatureType.ED25519, 0xC74F20A3)
    assert peter.to_vkey() == PETER_VKEY
    assert NoteVerifier.from_vkey(ENOCH_VKEY).key_id == 0xAF0CFE78
    # A native cosignature v1 witness key (type 0x04) and a plain Ed25519 one, from transparency-dev/formats.
    remora = NoteVerifier.from_vkey("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
    assert (remora.signature_type, remora.key_id) == (SignatureType.COSIGNATURE_V1, 0xDA77ADE7)
    assert NoteVerifier.from_vkey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6").key_id == 0x7997405C
    assert key_id("PeterNeumann", SignatureType.ED25519, peter.public_key) == 0xC74F20A3


def test_every_mangled_vkey_is_refused() -> None:
    # As sumdb/note's TestNewVerifier: every proper substring and every one-byte increment must fail.
    raw = PETER_VKEY.encode()
    mangled = [raw[i:j] for i in range(len(raw) + 1) for j in range(i + 1, len(raw) + 1) if (i, j) != (0, len(raw))]
    mangled += [raw[:i] + bytes([raw[i] + 1]) + raw[i + 1 :] for i in range(len(raw))]
    mangled += [
        b"PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # wrong key length
        b"PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown algorithm
        b"rekor.sigstore.dev+12345678+AwEB",  # unknown algorithm, too short
        b"rekor.sigstore.dev+00000000+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",  # wrong key id
        b"bananas.sigstore.dev+12344556",  # wrong number of parts
        PETER_VKEY.replace("c74f20a3", "C74F20A3").encode(),  # one spelling per key id
    ]
    accepted = []
    for candidate in mangled:
        try:
            NoteVerifier.from_vkey(candidate.decode("latin-1"))
        except InvalidNote:
            continue
        accepted.append(candidate)
    assert accepted == []


def test_signing_reproduces_the_published_note() -> None:
    signer = peter_signer()
    assert signer.verifier.to_vkey() == PETER_VKEY  # the private key is the published vkey's
    assert format_note(TEXT, [signer.sign(TEXT)]) == TEXT + "\n" + PETER_SIG  # Ed25519 is deterministic


def test_open_verifies_known_keys_and_ignores_unknown_ones() -> None:
    peter, enoch = NoteVerifier.from_vkey(PETER_VKEY), NoteVerifier.from_vkey(ENOCH_VKEY)
    note = parse_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    assert note.text == TEXT and [sig.name for sig in note.signatures] == ["PeterNeumann", "EnochRoot"]
    assert verified_keys(note, [peter]) == (peter,)
    assert set(verified_keys(note, [peter, enoch])) == {peter, enoch}
    assert verified_keys(note, []) == ()
    # Duplicates of a verified signature count once; unknown keys' signatures, even broken ones, are ignored.
    broken_enoch = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    duplicated = parse_note(TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + broken_enoch)
    assert verified_keys(duplicated, [peter]) == (peter,)
    # A signature that claims a name or a key id we know, but not both, is someone else's.
    assert verified_keys(parse_note(TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "CarmenSandiego")), [peter]) == ()
    assert verified_keys(parse_note(TEXT + "\n" + PETER_SIG.replace("x08g", "xxxx")), [peter]) == ()


def test_a_known_keys_bad_signature_rejects_the_note() -> None:
    peter = NoteVerifier.from_vkey(PETER_VKEY)
    with pytest.raises(InvalidNote):
        verified_keys(parse_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]), [peter])
    with pytest.raises(InvalidNote):
        verified_keys(parse_note(TEXT.replace("answer", "question") + "\n" + PETER_SIG), [peter])


@pytest.mark.parametrize(
    "message",
    [
        TEXT.encode(),  # no signatures
        (TEXT + "\n").encode(),  # empty signature block
        (TEXT + "\n" + PETER_SIG[:-1]).encode(),  # no final newline
        ("\x01" + TEXT + "\n" + PETER_SIG).encode(),  # control character
        b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),  # not UTF-8
        (TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name")).encode(),  # space in a key name
        (TEXT + "\n" + PETER_SIG + "Unexpected line.\n").encode(),
        (TEXT + "\n" + PETER_SIG * 101).encode(),  # too many signatures
        (TEXT + "\n" + PETER_SIG.replace("=\n", "\n")).encode(),  # non-canonical base64
        (TEXT + "\n— a+b " + PETER_SIG.split(" ")[2]).encode(),  # '+' in a key name
        (TEXT + "\n— PeterNeumann AAAAAA==\n").encode(),  # a key id and no signature
    ],
)
def test_malformed_notes_are_refused(message: bytes) -> None:
    with pytest.raises(InvalidNote):
        parse_note(message)


def test_the_spec_example_note_parses_with_its_inner_blank_line() -> None:
    note = parse_note(SPEC_NOTE)
    assert note.text == "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    (signature,) = note.signatures
    assert (signature.name, signature.key_id, len(signature.signature)) == (
        "quasimodo.example/salvatore",
        0x367BA04B,
        64,
    )
    assert note.to_text() == SPEC_NOTE


def test_the_spec_checkpoint_and_its_cosignature_parse() -> None:
    checkpoint = Checkpoint.from_text(CHECKPOINT_TEXT)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert checkpoint.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.to_text() == CHECKPOINT_TEXT
    note = parse_note(COSIGNED_CHECKPOINT)
    assert note.text == CHECKPOINT_TEXT and note.to_text() == COSIGNED_CHECKPOINT
    log_signature, cosignature = note.signatures
    assert cosignature.name == "witness.example.com/w1"
    assert cosignature_timestamp(cosignature) == 1679315147  # the spec's "time 1679315147"
    with pytest.raises(InvalidNote):
        cosignature_timestamp(log_signature)  # a plain signature has no timestamp


def test_published_cosignature_layout() -> None:
    cosignature = parse_signature_line(
        "— w ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="
    )
    assert (cosignature.key_id, cosignature_timestamp(cosignature)) == (0x646846B9, 1727964367)
    plain = parse_signature_line(
        "— w eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY="
    )
    with pytest.raises(InvalidNote):
        cosignature_timestamp(plain)


def test_cosignatures_cover_the_timestamp_and_the_text() -> None:
    witness = NoteSigner("witness.example/w1", SignatureType.COSIGNATURE_V1, ed25519.Ed25519PrivateKey.generate())
    cosignature = witness.sign(CHECKPOINT_TEXT, timestamp=1679315147)
    assert cosignature_timestamp(cosignature) == 1679315147
    assert witness.verifier.verify(CHECKPOINT_TEXT, cosignature)
    assert not witness.verifier.verify(CHECKPOINT_TEXT.replace("20852163", "20852164"), cosignature)
    redated = NoteSignature(cosignature.name, cosignature.key_id, (1).to_bytes(8, "big") + cosignature.signature[8:])
    assert not witness.verifier.verify(CHECKPOINT_TEXT, redated)
    # The same key as a plain note key has another key id, so a cosignature never passes as a log signature.
    plain = NoteVerifier(witness.name, SignatureType.ED25519, witness.verifier.public_key)
    assert plain.key_id != witness.verifier.key_id and not plain.verify(CHECKPOINT_TEXT, cosignature)
    lines = parse_signature_lines(cosignature.to_line() + witness.sign(CHECKPOINT_TEXT, timestamp=1).to_line())
    assert len(lines) == 2 and all(witness.verifier.verify(CHECKPOINT_TEXT, line) for line in lines)


@pytest.mark.parametrize(
    "text",
    [
        "o\n1\n",  # no root line
        "o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # leading zero
        "o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",  # unpadded base64
        "o\n1\nAAAA\n",  # not 32 bytes
        "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # empty origin
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",  # empty extension line
        "o\n9223372036854775808\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",  # past 2**63 - 1
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",  # no final newline
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(InvalidNote):
        Checkpoint.from_text(text)


def test_checkpoint_extension_lines_round_trip() -> None:
    text = CHECKPOINT_TEXT + "ext one\nExtendo\n"
    checkpoint = Checkpoint.from_text(text)
    assert checkpoint.extensions == ("ext one", "Extendo") and checkpoint.to_text() == text
