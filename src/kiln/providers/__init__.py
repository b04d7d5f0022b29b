"""Clients for outside AI services, shared by the surfaces; imports only `kiln.core`.

- `http`: `ProviderClient` (timeouts, bounded retries, typed errors, offline guard for cloud origins)
- `config`: `ProviderSettings` (`KILN_LLM_URL`, `KILN_LLM_MODEL`, `KILN_LLM_API_KEY`, `KILN_COMFYUI_URL`, ...)
- `llm`: OpenAI-compatible chat (plain and streamed), embeddings, models
- `comfyui`: ComfyUI prompt / WebSocket / history / view
- `sdnext`: SDNext / AUTOMATIC1111 txt2img, progress, interrupt, LoRA listing
- `embeddings`: the local sentence-embedding model (all-MiniLM-L6-v2, offline)
"""
