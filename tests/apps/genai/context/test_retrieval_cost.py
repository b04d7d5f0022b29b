"""What a KB query costs in statements, on SQLite and PostgreSQL: a hybrid query is one keyword
statement and one statement that resolves the fused hits' rows together with the KB's live
generation (no re-read of the KB row per query), and the SQLite keyword statement scopes the KB on
the chunk row, not with a `kb:` phrase that bm25 would count over every chunk of the KB."""

from __future__ import annotations

import pytest

from kiln.apps.genai.context.models import KnowledgeBase
from kiln.apps.genai.context.query import run_query
from kiln.apps.genai.platform.deployments import active_bindings
from tests.apps.genai.context.helpers import KB, add_docs, create_kb, query, superadmin, wait_runs
from tests.apps.genai.helpers import recorded_sql


async def _statements_of_query(app, kb_id: str, body: dict) -> tuple[dict, list[tuple[str, object]]]:
    """`run_query`'s result and the statements it ran, with their parameters (the bindings read
    beforehand, as knowledge chat does; an earlier query has checked the embedded index once)."""
    kernel = app.state.kernel
    async with kernel.db.session() as session:
        kb = await session.get(KnowledgeBase, kb_id)
        bindings = await active_bindings(session)
        with recorded_sql(app, parameters=True) as sql:
            found = await run_query(session, kernel, kb, body, bindings=bindings)
    return found, sql


async def test_a_hybrid_query_is_one_keyword_and_one_row_statement(app, client):
    headers = await superadmin(app, client)
    kb = await create_kb(client, headers)
    await add_docs(client, headers, kb["id"])
    body = {"query_text": "honey bees nectar", "search_method": "hybrid", "top_k": 3}  # every term in one chunk
    through_api = await query(client, headers, kb["id"], body["query_text"], search_method="hybrid", top_k=3)
    found, sql = await _statements_of_query(app, kb["id"], body)
    assert [r["id"] for r in found["results"]] == [r["id"] for r in through_api["results"]]
    assert found["results"][0]["title"] == "Honey bees"
    assert len(sql) == 2, sql
    keyword, rows = (statement for statement, _ in sql)
    assert "genai_context_chunks_fts" in keyword or "ts_rank_cd" in keyword
    # The rows and the KB's generation in one statement; the KB row itself is not read again.
    assert "from genai_context_chunks" in rows and "genai_context_knowledge_bases.generation" in rows
    assert not any(statement.startswith("select genai_context_knowledge_bases.id") for statement, _ in sql)
    # Only the columns a result shows: never the document's text or the chunk's vector.
    assert "genai_context_documents.text" not in rows and "genai_context_chunks.vector" not in rows


async def test_keyword_search_scopes_the_kb_on_the_chunk_row(app, client):
    headers = await superadmin(app, client)
    first, second = await create_kb(client, headers, "first"), await create_kb(client, headers, "second")
    ids = await add_docs(client, headers, first["id"])
    other = await add_docs(client, headers, second["id"])  # the same texts: every term matches in both KBs
    found, sql = await _statements_of_query(
        app, first["id"], {"query_text": "bees honey hive", "search_method": "keyword", "top_k": 10}
    )
    assert [r["title"] for r in found["results"]] == ["Honey bees"]
    assert found["results"][0]["document_id"] == ids["Honey bees"] != other["Honey bees"]
    if app.state.kernel.db.engine.dialect.name == "sqlite":
        match = next(params for statement, params in sql if "genai_context_chunks_fts match" in statement)
        expression = match[0] if isinstance(match, tuple | list) else next(iter(match.values()))
        # bm25 counts the rows of every phrase in the MATCH for its IDF: a `kb:` phrase holds every
        # chunk of the KB (2.8 ms of CPU per query at 100,000 chunks) and added nothing to the score.
        assert "kb:" not in str(expression) and str(expression).startswith("text:(")
    # No chunk holds every term ("zebra" is nowhere): the any-term statement ranks, scoped the same.
    anywhere, sql = await _statements_of_query(
        app, first["id"], {"query_text": "bees honey zebra", "search_method": "keyword", "top_k": 10}
    )
    assert anywhere["results"][0]["document_id"] == ids["Honey bees"]
    assert {r["document_id"] for r in anywhere["results"]} <= set(ids.values())
    assert sum("genai_context_chunks_fts" in statement or "ts_rank_cd" in statement for statement, _ in sql) == 2
    second_found, _ = await _statements_of_query(
        app, second["id"], {"query_text": "bees honey hive", "search_method": "keyword", "top_k": 10}
    )
    assert [r["document_id"] for r in second_found["results"]] == [other["Honey bees"]]


@pytest.mark.parametrize("method", ["keyword", "hybrid"])
async def test_a_query_with_a_stale_kb_runs_again_on_the_live_generation(app, client, method):
    """The KB object a caller holds can be older than a blue/green swap (its generation's rows and
    index are gone): the query notices and answers from the live generation, never empty."""
    headers = await superadmin(app, client)
    kb = await create_kb(client, headers)
    ids = await add_docs(client, headers, kb["id"])
    kernel = app.state.kernel
    async with kernel.db.session() as session:
        stale = await session.get(KnowledgeBase, kb["id"])
        old_generation = stale.generation
        response = await client.post(f"{KB}/{kb['id']}/resync", headers=headers)
        assert response.status_code == 202, response.text
        runs = await wait_runs(client, headers, kb["id"])
        assert runs[0]["status"] == "ready", runs[0]
        assert stale.generation == old_generation  # not re-read: this session still holds the old row
        body = {"query_text": "How do bees make honey?", "search_method": method, "top_k": 1}
        found = await run_query(session, kernel, stale, body)
    assert stale.generation == old_generation + 1
    assert [r["document_id"] for r in found["results"]] == [ids["Honey bees"]]
