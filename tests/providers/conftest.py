from tests.fakes.openai_llm import fake_llm  # noqa: F401  (fixture)
