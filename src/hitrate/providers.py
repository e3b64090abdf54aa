"""LiteLLM provider prefixes (`groq/llama-3.1-8b`) -> where and how we reach them.

Every provider here speaks the OpenAI wire format at `api_base` (Anthropic also its
own Messages API at the same base), with the key LiteLLM reads from `key_env` when the
config gives none. `api_base` in the config always wins. Providers that need request
signing or another protocol are not here: naming one is a startup error listing these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Provider:
    api_base: str | None  # None: the config must give one (self-hosted servers)
    key_env: str | None = None


# OpenAI and servers that speak its API wherever they run.
_SELF_HOSTED = {name: Provider(None) for name in (
    "hosted_vllm", "vllm", "openai_compatible", "custom_openai", "lm_studio", "llamafile",
    "xinference")}

PROVIDERS: dict[str, Provider] = {
    "openai": Provider("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "text-completion-openai": Provider("https://api.openai.com/v1", "OPENAI_API_KEY"),
    **_SELF_HOSTED,
    "anthropic": Provider("https://api.anthropic.com/v1", "ANTHROPIC_API_KEY"),
    "gemini": Provider("https://generativelanguage.googleapis.com/v1beta/openai",
                       "GEMINI_API_KEY"),
    "groq": Provider("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "together_ai": Provider("https://api.together.xyz/v1", "TOGETHERAI_API_KEY"),
    "deepseek": Provider("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "mistral": Provider("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "fireworks_ai": Provider("https://api.fireworks.ai/inference/v1", "FIREWORKS_AI_API_KEY"),
    "openrouter": Provider("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "perplexity": Provider("https://api.perplexity.ai", "PERPLEXITYAI_API_KEY"),
    "xai": Provider("https://api.x.ai/v1", "XAI_API_KEY"),
    "deepinfra": Provider("https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"),
    "cerebras": Provider("https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    "nvidia_nim": Provider("https://integrate.api.nvidia.com/v1", "NVIDIA_NIM_API_KEY"),
    "sambanova": Provider("https://api.sambanova.ai/v1", "SAMBANOVA_API_KEY"),
    "ollama": Provider("http://localhost:11434/v1"),
    "ollama_chat": Provider("http://localhost:11434/v1"),
}

# Other key variables LiteLLM also reads for the same provider.
KEY_ALIASES = {"TOGETHERAI_API_KEY": "TOGETHER_API_KEY", "FIREWORKS_AI_API_KEY": "FIREWORKS_API_KEY",
               "PERPLEXITYAI_API_KEY": "PERPLEXITY_API_KEY", "GEMINI_API_KEY": "GOOGLE_API_KEY"}
