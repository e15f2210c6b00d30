"""Check tests/rag_corpus_hard/corpus.json against the corpus's rules (standard library only).

Usage: python check_corpus.py [path/to/corpus.json]

Prints a short summary; exits 1 and lists every violation if any rule is broken.

Words are tokens made by lowercasing, replacing every character that is not a letter or digit with a space
and splitting on whitespace. A question must share no run of 4 consecutive words with its own document
(title, headings and paragraphs, read in order as one run of text, so runs across a boundary count too).
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

NUM_DOMAINS = 6
DOCS_PER_DOMAIN = 6
FORMATS = ("pdf", "docx", "html", "text")
SECTIONS = (3, 5)
PARAGRAPHS = (1, 3)
WORDS = (250, 450)
QUESTIONS_PER_DOC = 2
NGRAM = 4
FORMAT_TOTAL = (8, 10)  # "roughly 9-10 of each format" over 36 documents


def words(text: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


def ngrams(tokens: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def doc_texts(doc: dict[str, Any]) -> list[str]:
    texts = [doc.get("title", "")]
    for section in doc.get("sections", []):
        texts.append(section.get("heading", ""))
        texts.extend(section.get("paragraphs", []))
    return [t for t in texts if isinstance(t, str)]


def check(corpus: Any) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    summary: list[str] = []
    if not isinstance(corpus, dict):
        return ["corpus is not a JSON object"], summary
    if set(corpus) != {"about", "documents", "questions"}:
        errors.append(f"top-level keys are {sorted(corpus)}, want about, documents, questions")
    if not is_text(corpus.get("about")):
        errors.append("about: missing or empty")
    documents = corpus.get("documents")
    questions = corpus.get("questions")
    if not isinstance(documents, list) or not isinstance(questions, list):
        errors.append("documents and questions must be lists")
        return errors, summary

    docs: dict[str, dict[str, Any]] = {}
    by_domain: dict[str, list[dict[str, Any]]] = defaultdict(list)
    word_counts: list[int] = []
    for i, doc in enumerate(documents):
        where = f"documents[{i}]"
        if not isinstance(doc, dict):
            errors.append(f"{where}: not an object")
            continue
        if set(doc) != {"id", "domain", "title", "format", "sections"}:
            errors.append(f"{where}: keys are {sorted(doc)}, want id, domain, title, format, sections")
        doc_id, domain = doc.get("id"), doc.get("domain")
        if not isinstance(doc_id, str) or not isinstance(domain, str) or not doc_id.strip() or not domain.strip():
            errors.append(f"{where}: id and domain must be non-empty strings")
            continue
        where = f"document {doc_id}"
        if doc_id in docs:
            errors.append(f"{where}: duplicate id")
        docs[doc_id] = doc
        by_domain[domain].append(doc)
        if not doc_id.startswith(domain + "-") or doc_id == domain + "-":
            errors.append(f"{where}: id does not start with its domain '{domain}-'")
        if not is_text(doc.get("title")):
            errors.append(f"{where}: missing title")
        if doc.get("format") not in FORMATS:
            errors.append(f"{where}: format {doc.get('format')!r} is not one of {FORMATS}")
        sections = doc.get("sections")
        if not isinstance(sections, list) or not SECTIONS[0] <= len(sections) <= SECTIONS[1]:
            n = len(sections) if isinstance(sections, list) else "no"
            errors.append(f"{where}: {n} sections, want {SECTIONS[0]} to {SECTIONS[1]}")
            sections = sections if isinstance(sections, list) else []
        count = 0
        for j, section in enumerate(sections):
            if not isinstance(section, dict) or set(section) != {"heading", "paragraphs"}:
                errors.append(f"{where}: section {j} must be an object with heading and paragraphs")
                continue
            if not is_text(section["heading"]):
                errors.append(f"{where}: section {j} has an empty heading")
            else:
                count += len(words(section["heading"]))
            paragraphs = section["paragraphs"]
            if not isinstance(paragraphs, list) or not PARAGRAPHS[0] <= len(paragraphs) <= PARAGRAPHS[1]:
                n = len(paragraphs) if isinstance(paragraphs, list) else "no"
                errors.append(f"{where}: section {j} has {n} paragraphs, want {PARAGRAPHS[0]} to {PARAGRAPHS[1]}")
                paragraphs = paragraphs if isinstance(paragraphs, list) else []
            for k, paragraph in enumerate(paragraphs):
                if not is_text(paragraph):
                    errors.append(f"{where}: section {j} paragraph {k} is empty or not a string")
                else:
                    count += len(words(paragraph))
        word_counts.append(count)
        if not WORDS[0] <= count <= WORDS[1]:
            errors.append(f"{where}: {count} words in headings and paragraphs, want {WORDS[0]} to {WORDS[1]}")

    if len(by_domain) != NUM_DOMAINS:
        errors.append(f"{len(by_domain)} domains, want {NUM_DOMAINS}")
    for domain, members in sorted(by_domain.items()):
        if len(members) != DOCS_PER_DOMAIN:
            errors.append(f"domain {domain}: {len(members)} documents, want {DOCS_PER_DOMAIN}")
        missing = [f for f in FORMATS if f not in {d.get("format") for d in members}]
        if missing:
            errors.append(f"domain {domain}: no document in format(s) {', '.join(missing)}")
    format_counts = Counter(d.get("format") for d in docs.values())
    for fmt in FORMATS:
        if not FORMAT_TOTAL[0] <= format_counts[fmt] <= FORMAT_TOTAL[1]:
            errors.append(f"format {fmt}: {format_counts[fmt]} documents, want {FORMAT_TOTAL[0]} to {FORMAT_TOTAL[1]}")

    per_doc: Counter[str] = Counter()
    seen_questions: set[tuple[str, ...]] = set()
    doc_grams = {doc_id: ngrams(words(" ".join(doc_texts(doc)))) for doc_id, doc in docs.items()}
    for i, item in enumerate(questions):
        where = f"questions[{i}]"
        if not isinstance(item, dict) or set(item) != {"question", "doc"}:
            errors.append(f"{where}: must be an object with question and doc")
            continue
        text, doc_id = item["question"], item["doc"]
        if not is_text(text):
            errors.append(f"{where}: empty question")
            continue
        if doc_id not in docs:
            errors.append(f"{where}: doc {doc_id!r} does not exist")
            continue
        per_doc[doc_id] += 1
        tokens = words(text)
        if tuple(tokens) in seen_questions:
            errors.append(f"{where}: duplicate question {text!r}")
        seen_questions.add(tuple(tokens))
        shared = sorted(ngrams(tokens) & doc_grams[doc_id])
        if shared:
            runs = "; ".join(" ".join(g) for g in shared)
            errors.append(f"{where} ({doc_id}): shares {NGRAM}-word run(s) with its document: {runs}  <- {text!r}")
    for doc_id in docs:
        if per_doc[doc_id] != QUESTIONS_PER_DOC:
            errors.append(f"document {doc_id}: {per_doc[doc_id]} questions, want {QUESTIONS_PER_DOC}")

    summary.append(
        f"{len(docs)} documents in {len(by_domain)} domains: "
        + ", ".join(f"{d} ({len(m)})" for d, m in sorted(by_domain.items()))
    )
    summary.append("formats: " + ", ".join(f"{f} {format_counts[f]}" for f in FORMATS))
    if word_counts:
        summary.append(
            f"words per document: min {min(word_counts)}, max {max(word_counts)}, "
            f"mean {sum(word_counts) / len(word_counts):.0f}"
        )
    summary.append(
        f"{len(questions)} questions ({QUESTIONS_PER_DOC} per document wanted), "
        f"checked for {NGRAM}-word runs shared with their document"
    )
    return errors, summary


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "corpus.json"
    try:
        corpus = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot load {path}: {exc}")
        return 1
    errors, summary = check(corpus)
    print(f"corpus: {path}")
    for line in summary:
        print("  " + line)
    if errors:
        print(f"FAILED: {len(errors)} violation(s)")
        for error in errors:
            print("  - " + error)
        return 1
    print("OK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
