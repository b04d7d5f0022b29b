"""Capabilities and provider families: code, not rows (they change only with their adapters).

Each family has an origin, local or cloud, inherited by its instances and not editable per
instance; offline, cloud-origin providers are refused everywhere (§3.9).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

LLM = "llm_inference"
EMBEDDINGS = "embeddings"
VECTOR_STORE = "vector_store"
MCP = "mcp_runtime"
SANDBOX = "sandbox_execution"
MODEL_BEARING = (LLM, EMBEDDINGS)


@dataclass(frozen=True, slots=True)
class Capability:
    capability: str
    display_name: str
    description: str
    required: bool


@dataclass(frozen=True, slots=True)
class Family:
    provider_key: str
    capability: str
    adapter_kind: str
    provider_origin: str
    display_name: str
    description: str

    def dto(self) -> dict[str, str]:
        return asdict(self)


CAPABILITIES: dict[str, Capability] = {
    c.capability: c
    for c in (
        Capability(LLM, "LLM inference", "Chat and generation through the bound models.", True),
        Capability(EMBEDDINGS, "Embeddings", "Text embeddings for retrieval and vector ingestion.", True),
        Capability(VECTOR_STORE, "Vector store", "Semantic retrieval over embedded documents.", True),
        Capability(MCP, "MCP runtime", "Gateway for MCP-hosted tool execution.", False),
        Capability(SANDBOX, "Sandbox execution", "Isolated code execution for agent tools.", False),
    )
}

FAMILIES: dict[str, Family] = {
    f.provider_key: f
    for f in (
        Family(
            "vllm_local",
            LLM,
            "openai_compatible_llm",
            "local",
            "vLLM local",
            "Local OpenAI-compatible LLM server (vLLM, Ollama, any /v1/chat/completions).",
        ),
        Family(
            "llama_cpp_local",
            LLM,
            "openai_compatible_llm",
            "local",
            "llama.cpp local",
            "OpenAI-compatible llama.cpp server.",
        ),
        Family(
            "vllm_embeddings_local",
            EMBEDDINGS,
            "openai_compatible_embeddings",
            "local",
            "Local embeddings server",
            "Local OpenAI-compatible /v1/embeddings server.",
        ),
        Family(
            "local_embeddings",
            EMBEDDINGS,
            "local_embeddings",
            "local",
            "Kiln local embeddings",
            "Sentence-embedding model shipped with Kiln, run on the CPU; needs no server.",
        ),
        Family(
            "openai_compatible_cloud_llm",
            LLM,
            "openai_compatible_llm",
            "cloud",
            "OpenAI-compatible cloud LLM",
            "Shared cloud LLM endpoint; key through secret_refs.",
        ),
        Family(
            "openai_compatible_cloud_embeddings",
            EMBEDDINGS,
            "openai_compatible_embeddings",
            "cloud",
            "OpenAI-compatible cloud embeddings",
            "Shared cloud embeddings endpoint; key through secret_refs.",
        ),
        Family(
            "embedded_vector",
            VECTOR_STORE,
            "embedded_vector",
            "local",
            "Kiln embedded vector store",
            "Vector index persisted under KILN_HOME; needs no server.",
        ),
        Family("weaviate_local", VECTOR_STORE, "weaviate_http", "local", "Weaviate local", "Weaviate server."),
        Family("qdrant_local", VECTOR_STORE, "qdrant_http", "local", "Qdrant local", "Qdrant server."),
        Family(
            "pgvector_local",
            VECTOR_STORE,
            "pgvector_sql",
            "local",
            "pgvector local",
            "PostgreSQL with the pgvector extension; endpoint_url is a postgresql:// DSN, its password in "
            "secret_refs.password.",
        ),
        Family("mcp_gateway_local", MCP, "mcp_http", "local", "MCP gateway local", "MCP tool gateway."),
        Family("sandbox_local", SANDBOX, "sandbox_http", "local", "Sandbox local", "Code sandbox service."),
    )
}

# Families served inside Kiln: no endpoint, always reachable.
IN_PROCESS_ADAPTERS = frozenset({"local_embeddings", "embedded_vector"})


# Families whose endpoint is a database DSN (postgresql://), not an HTTP URL.
DSN_ADAPTERS = frozenset({"pgvector_sql"})


def family(provider_key: str) -> Family | None:
    return FAMILIES.get(provider_key)


def is_cloud(provider_key: str) -> bool:
    fam = FAMILIES.get(provider_key)
    return fam is not None and fam.provider_origin == "cloud"
