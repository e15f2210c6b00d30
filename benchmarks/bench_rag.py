"""Collections benchmark: retrieval quality, document ingest, and query latency by stage at 100/1k/10k chunks.

Everything runs in this process as a worker runs it (``RagService`` with the real embedder over an SQLite store;
no Ray, no network): quality (recall@1, recall@5, MRR) on both eval corpora (tests/rag_corpus, and
tests/rag_corpus_hard rendered as PDF, Word, HTML and text), dense retrieval beside hybrid; the ingest of a
100-page PDF with its parse stage (in the budgeted child) timed apart from chunking and embedding; ingest throughput
(chunks/s: chunking, embedding, sealing, storing) while building synthetic collections of 100, 1,000 and
10,000 chunks; then per size the latency of a query, cold (the worker's cache emptied: load + decrypt + index)
and warm, split into load+decrypt, query embedding and search, plus generation of ``--new-tokens`` tokens by the
batched engine on the tiny model with the retrieved excerpts in the prompt; the memory a cached collection
holds; and numpy's exact search beside faiss's IndexFlatIP on the same vectors.

    python -m benchmarks.bench_rag                 # make bench-rag
    python -m benchmarks.bench_rag --sizes 100,1000 --out /tmp/rag.json

JSON (``--out``, markdown beside it): {"benchmark", "machine", "quality": {corpus: {retrieval: {...}}},
"pdf_ingest": {"pages", "bytes", "chunks", "parse_s", "embed_s", "total_s"}, "sizes": [{"chunks",
"ingest_chunks_per_s", "cached_mb", "cold": {stage: summary}, "warm": {stage: summary}, "search_ms":
{"numpy": summary, "faiss": summary}}]}. The last line prints warm retrieval p50 at the largest size.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from benchmarks.experiments.common import cpu_model_name
from benchmarks.rag_quality import CORPUS, HARD_CORPUS, UNLIMITED, evaluate, load_corpus
from benchmarks.render_documents import Sect, to_pdf
from benchmarks.stats import summarize
from securechat.config import EngineSettings
from securechat.engine.base import ChatMessage, GenerationRequest, GenerationStats, SamplingParams
from securechat.engine.factory import build_engine
from securechat.rag.bodies import CollectionRef, DocumentInput, IngestBody
from securechat.rag.documents.model import PDF
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.keys import CollectionKey
from securechat.rag.prompt import with_excerpts
from securechat.rag.service import IngestTicket, RagOptions, RagService
from securechat.rag.store import SQLiteDocumentStore
from securechat.rag.store_client import LocalDocumentStore

TENANT: Final = "bench"
PDF_PAGES: Final = 100
SECTIONS_PER_PAGE: Final = 5  # the hard corpus's sections run ~90 words: about 450 words a page
SEED: Final = 1234
DOCS_PER_INGEST: Final = 64
WORDS: Final = (
    "river",
    "bridge",
    "engine",
    "ledger",
    "harvest",
    "signal",
    "copper",
    "window",
    "meadow",
    "lantern",
    "orbit",
    "tariff",
    "glacier",
    "violin",
    "pepper",
    "quarry",
    "saddle",
    "thunder",
    "marble",
    "cipher",
    "canvas",
    "falcon",
    "harbor",
    "yeast",
    "voltage",
    "beacon",
    "timber",
    "oyster",
    "compass",
    "furnace",
    "pillow",
    "rocket",
    "shelter",
    "tunnel",
    "velvet",
    "walnut",
    "zephyr",
    "anchor",
    "basket",
    "candle",
    "dolphin",
    "ember",
    "fossil",
    "garnet",
    "hammock",
    "island",
    "jigsaw",
    "kettle",
    "lagoon",
    "magnet",
    "nectar",
    "opal",
    "parcel",
    "quiver",
    "ribbon",
    "spindle",
)


def synthetic_document(rng: random.Random, index: int) -> DocumentInput:
    """About 170 embedder tokens of random sentences: one chunk each."""
    sentences = []
    for _ in range(14):
        words = rng.choices(WORDS, k=rng.randint(6, 11))
        sentences.append(" ".join(words).capitalize() + ".")
    return DocumentInput(f"doc{index:05d}", f"doc{index:05d}.txt", "text/plain", " ".join(sentences))


async def build(service: RagService, store: SQLiteDocumentStore, num_chunks: int) -> tuple[CollectionRef, float]:
    """A collection of ``num_chunks`` synthetic chunks; returns it and the ingest throughput (chunks/s)."""
    collection_id = f"synthetic-{num_chunks}"
    store.create_collection(TENANT, collection_id)
    ref = CollectionRef(collection_id, CollectionKey.generate())
    rng = random.Random(SEED + num_chunks)
    documents = [synthetic_document(rng, i) for i in range(num_chunks)]
    started = time.perf_counter()
    for start in range(0, num_chunks, DOCS_PER_INGEST):
        batch = IngestBody(ref, tuple(documents[start : start + DOCS_PER_INGEST]))
        await service.ingest(TENANT, batch, UNLIMITED, IngestTicket.new())
        print(f"  ingested {min(start + DOCS_PER_INGEST, num_chunks):>6}/{num_chunks}", flush=True)
    elapsed = time.perf_counter() - started
    actual = store.collection(TENANT, collection_id).num_chunks
    return ref, actual / elapsed


async def generate(engine: Any, messages: tuple[ChatMessage, ...], new_tokens: int) -> float:
    sampling = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
    stats: GenerationStats | None = None
    async for chunk in engine.generate(GenerationRequest("bench", messages, sampling)):
        stats = chunk.stats or stats
    assert stats is not None
    return stats.total_ms


async def measure_size(
    service: RagService, ref: CollectionRef, engine: Any, queries: Sequence[str], new_tokens: int
) -> dict[str, Any]:
    stages: dict[str, dict[str, list[float]]] = {
        mode: {"load_ms": [], "embed_ms": [], "search_ms": [], "retrieval_ms": [], "generation_ms": []}
        for mode in ("cold", "warm")
    }
    for i, query in enumerate(queries):
        mode = "cold" if i < 3 else "warm"
        if mode == "cold":
            service.cache.clear()
        started = time.perf_counter()
        retrieval = await service.retrieve(TENANT, ref, query, 4)
        total = (time.perf_counter() - started) * 1000
        assert retrieval.timings.cached == (mode == "warm")
        messages = with_excerpts((ChatMessage("user", query),), retrieval.hits)
        stage = stages[mode]
        stage["load_ms"].append(retrieval.timings.load_ms)
        stage["embed_ms"].append(retrieval.timings.embed_ms)
        stage["search_ms"].append(retrieval.timings.search_ms)
        stage["retrieval_ms"].append(total)
        stage["generation_ms"].append(await generate(engine, messages, new_tokens))
    index = next(iter(service.cache._entries.values())).index  # the cached collection
    return {
        "cold": {name: summarize(values) for name, values in stages["cold"].items()},
        "warm": {name: summarize(values) for name, values in stages["warm"].items()},
        "cached_mb": round(index.nbytes / 2**20, 2),
        "search_ms": compare_search(index.matrix, service.embedder.embed(list(queries[:10]))),
    }


def compare_search(matrix: np.ndarray, queries: np.ndarray, k: int = 4, repeats: int = 20) -> dict[str, Any]:
    """numpy's exact inner product (what workers run) beside faiss's IndexFlatIP, same vectors, same answers."""
    import faiss

    numpy_ms, faiss_ms = [], []
    index = faiss.IndexFlatIP(matrix.shape[1])
    index.add(matrix)
    for _ in range(repeats):
        for query in queries:
            started = time.perf_counter()
            scores = matrix @ query
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.argsort(-scores[top])]
            numpy_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            _, faiss_top = index.search(query[None, :], k)
            faiss_ms.append((time.perf_counter() - started) * 1000)
            assert set(top.tolist()) == set(faiss_top[0].tolist())
    return {"numpy": summarize(numpy_ms), "faiss": summarize(faiss_ms)}


async def measure_quality(embedder: MiniLMEmbedder, store: SQLiteDocumentStore) -> dict[str, Any]:
    """recall@1/@5 and MRR per corpus, dense retrieval beside hybrid, each in a fresh collection."""
    quality: dict[str, Any] = {}
    for name, path in (("easy", CORPUS), ("hard", HARD_CORPUS)):
        for retrieval in ("dense", "hybrid"):
            service = RagService(embedder, LocalDocumentStore(store), _options(retrieval))
            collection_id = f"quality-{name}-{retrieval}"
            store.create_collection(TENANT, collection_id)
            result = await evaluate(service, TENANT, collection_id, load_corpus(path))
            quality.setdefault(name, {})[retrieval] = result.as_dict()
            print(f"quality {name} {retrieval}: {result.as_dict()}", flush=True)
    return quality


def handbook_pdf(pages: int) -> bytes:
    """A ``pages``-page PDF of the hard corpus's sections, cycled: real prose, headings, several per page."""
    corpus = load_corpus(HARD_CORPUS)
    sections = [Sect(s["heading"], tuple(s["paragraphs"])) for d in corpus["documents"] for s in d["sections"]]
    wanted = pages * SECTIONS_PER_PAGE
    cycled = [sections[i % len(sections)] for i in range(wanted)]
    return to_pdf("Staff handbook", cycled, sections_per_page=SECTIONS_PER_PAGE)


async def measure_pdf_ingest(service: RagService, store: SQLiteDocumentStore, pages: int) -> dict[str, Any]:
    """One ``pages``-page PDF through a whole ingest: parse (child process), chunk + embed, seal + store."""
    from pypdf import PdfReader

    data = handbook_pdf(pages)
    store.create_collection(TENANT, "handbook")
    ref = CollectionRef("handbook", CollectionKey.generate())
    body = IngestBody(ref, (DocumentInput("handbook", "handbook.pdf", PDF, data=data),))
    started = time.perf_counter()
    await service.ingest(TENANT, body, UNLIMITED, IngestTicket.new())
    total_s = time.perf_counter() - started
    report = {
        "pages": len(PdfReader(io.BytesIO(data)).pages),
        "bytes": len(data),
        "chunks": store.collection(TENANT, "handbook").num_chunks,
        "parse_s": round(service.last_parse_ms / 1000, 3),
        "embed_s": round(service.last_embed_ms / 1000, 3),
        "total_s": round(total_s, 3),
    }
    print(f"pdf ingest: {report}", flush=True)
    return report


def _options(retrieval: str = "hybrid") -> RagOptions:
    return RagOptions(16 << 20, 200, 40, 1 << 30, 600, retrieval=retrieval)


def markdown(report: dict[str, Any]) -> str:
    q, p = report["quality"], report["pdf_ingest"]
    lines = [
        f"# Collections benchmark ({report['machine']})",
        "",
        "In-process, as a worker runs it (RagService, all-MiniLM-L6-v2, SQLite store; no Ray). "
        f"Generation: batched engine, tiny model, {report['new_tokens']} new tokens.",
        "",
        "## Retrieval quality (paraphrased questions, by document, top 5)",
        "",
        "easy: tests/rag_corpus, 30 text documents on unrelated topics, 40 questions. hard: tests/rag_corpus_hard,",
        "36 documents in 6 families of near-identical siblings, rendered as PDF, Word, HTML and text, 72 questions.",
        "",
        "| corpus | retrieval | recall@1 | recall@5 | MRR |",
        "|---|---|---|---|---|",
        *(
            f"| {corpus} | {retrieval} | {r['recall_at_1']:.3f} | {r['recall_at_5']:.3f} | {r['mrr']:.3f} |"
            for corpus, by_retrieval in q.items()
            for retrieval, r in by_retrieval.items()
        ),
        "",
        f"## Ingest of a {p['pages']}-page PDF ({p['bytes'] / 2**20:.2f} MB, {p['chunks']} chunks)",
        "",
        "| parse (child process) s | embed s | total s (parse, chunk, embed, seal, store) |",
        "|---|---|---|",
        f"| {p['parse_s']:.2f} | {p['embed_s']:.2f} | {p['total_s']:.2f} |",
        "",
        "## Ingest and query latency (p50 ms; cold = the worker's cache emptied)",
        "",
        "| chunks | ingest chunks/s | cached MB | cold load+decrypt | cold retrieval | warm embed | warm search "
        "| warm retrieval | generation | numpy search | faiss search |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["sizes"]:
        cold, warm = row["cold"], row["warm"]
        lines.append(
            f"| {row['chunks']:,} | {row['ingest_chunks_per_s']:.1f} | {row['cached_mb']:.1f} "
            f"| {cold['load_ms']['p50']:.1f} | {cold['retrieval_ms']['p50']:.1f} | {warm['embed_ms']['p50']:.1f} "
            f"| {warm['search_ms']['p50']:.2f} | {warm['retrieval_ms']['p50']:.1f} "
            f"| {warm['generation_ms']['p50']:.1f} | {row['search_ms']['numpy']['p50']:.3f} "
            f"| {row['search_ms']['faiss']['p50']:.3f} |"
        )
    return "\n".join(lines) + "\n"


async def run(sizes: Sequence[int], num_queries: int, new_tokens: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        store = SQLiteDocumentStore(Path(directory) / "documents.sqlite3")
        embedder = MiniLMEmbedder()
        service = RagService(embedder, LocalDocumentStore(store), _options())
        quality = await measure_quality(embedder, store)
        pdf_ingest = await measure_pdf_ingest(service, store, PDF_PAGES)
        settings = EngineSettings(
            kind="batched",
            dtype="fp32",
            device="cpu",
            max_input_tokens=8192,  # four excerpts in the tiny model's byte-level tokens
            max_new_tokens=new_tokens,
            max_batch_size=2,
            kv_cache_tokens=2 * (8192 + new_tokens),
            torch_threads=1,
        )
        engine = build_engine(settings)
        await engine.start()
        try:
            rows: list[dict[str, Any]] = []
            queries = [q["question"] for q in load_corpus()["questions"]][:num_queries]
            for size in sizes:
                print(f"{size} chunks:", flush=True)
                ref, throughput = await build(service, store, size)
                row: dict[str, Any] = {"chunks": size, "ingest_chunks_per_s": round(throughput, 1)}
                row.update(await measure_size(service, ref, engine, queries, new_tokens))
                rows.append(row)
                print(f"  warm retrieval p50 {row['warm']['retrieval_ms']['p50']:.1f} ms", flush=True)
        finally:
            await engine.close()
    return {
        "benchmark": "rag",
        "machine": f"{cpu_model_name()}, {os.cpu_count()} cores",
        "new_tokens": new_tokens,
        "quality": quality,
        "pdf_ingest": pdf_ingest,
        "sizes": rows,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="collection sizes in chunks")
    parser.add_argument("--queries", type=int, default=23, help="queries per size: 3 cold, the rest warm")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="JSON path; the markdown table goes beside it")
    args = parser.parse_args(argv)
    report = asyncio.run(run([int(s) for s in args.sizes.split(",") if s], args.queries, args.new_tokens))
    table = markdown(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(table)
    print(table)
    if report["sizes"]:
        last = report["sizes"][-1]
        print(f"warm retrieval p50 at {last['chunks']:,} chunks: {last['warm']['retrieval_ms']['p50']:.1f} ms")


if __name__ == "__main__":
    main()
