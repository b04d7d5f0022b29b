from tests.fakes.hf_hub import fake_hub  # noqa: F401  (fixture)
from tests.fakes.openai_llm import fake_llm  # noqa: F401  (fixture)
