"""`filtered` of GET /adapters stays exact whichever way it is counted: tags by inclusion-exclusion
(intersections merged on SQLite, joined on PostgreSQL), a search with tags as an intersection of
the trigram index's ids with the tags' ids, and the general filter otherwise."""

from __future__ import annotations

import itertools
from pathlib import Path

from tests.apps.lora.kit import configure, create, write_lora

TAGS = ["red", "blue", "green", "grey"]


async def test_filtered_counts_match_a_brute_force_count(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    library: dict[str, tuple[set[str], bool]] = {}
    combos = [set(c) for size in range(0, 4) for c in itertools.combinations(TAGS[:3], size)] + [{"grey", "red"}]
    for i, tags in enumerate(combos * 2):
        name = f"{'inkwash' if i % 3 == 0 else 'plain'}-{i:02d}"
        active = i % 4 == 0
        adapter = await create(client, write_lora(lora_dir / f"a{i}.safetensors"), name, tags=sorted(tags))
        if active:
            await client.post(f"/v1/adapters/{adapter['id']}/activate")
        library[name] = (tags, active)
    for size in range(1, 5):
        for chosen in itertools.combinations(TAGS, size):
            for search in ("", "inkwash", "wash ink", "in"):
                for active_only in (False, True):
                    expected = sorted(
                        name
                        for name, (tags, active) in library.items()
                        if tags & set(chosen)
                        and all(word in name for word in search.split())
                        and (active or not active_only)
                    )
                    params = {"tags": ",".join(t.upper() for t in chosen), "search": search, "per_page": 50}
                    if active_only:
                        params["active_only"] = "true"
                    body = (await client.get("/v1/adapters", params=params)).json()
                    assert body["filtered"] == len(expected), params
                    assert sorted(a["name"] for a in body["items"]) == expected, params
                    assert body["total"] == len(library)
