from tests.fakes.comfyui import fake_comfyui  # noqa: F401  (fixture)
from tests.fakes.openai_llm import fake_llm  # noqa: F401  (fixture)
