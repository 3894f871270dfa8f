"""Help > About and `livecc-desktop --version`: version, model, device, and the licences of the
weights the app loads (it ships none)."""

from __future__ import annotations

from importlib import metadata

LICENCES = (
    ("LiveCC-7B-Instruct and Qwen2-VL-7B", "their own terms on the Hugging Face model cards: read them before use"),
    ("ChatTTS speech weights", "CC BY-NC 4.0 (non-commercial); ChatTTS code AGPL-3.0-or-later"),
    ("espeak-ng (the fallback voice)", "GPL-3.0"),
    ("LiveCC Desktop", "Apache-2.0"),
)


def version() -> str:
    try:
        return metadata.version("livecc-desktop")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def describe_model(loaded) -> str:
    """"tiny-qwen2-vl on CPU (float32)", with the weight precision when they are quantized:
    "LiveCC-7B-Instruct on NVIDIA H100 (bfloat16, int8 weights)"."""
    text = loaded.describe()
    precision = getattr(loaded, "precision", "none")
    if precision == "none":
        return text
    return f"{text[:-1]}, {precision} weights)" if text.endswith(")") else f"{text} ({precision} weights)"


def about_text(model_name: str, loaded) -> str:
    """Rich text for the About box; `loaded` is the LoadedModel or None."""
    model = describe_model(loaded) if loaded is not None else f"{model_name} (not loaded)"
    rows = "".join(f"<li><b>{name}</b>: {terms}</li>" for name, terms in LICENCES)
    return (f"<h3>LiveCC Desktop {version()}</h3>"
            "<p>Real-time video commentary with LiveCC (a streaming Qwen2-VL). Questions are answered from what "
            "the model has seen.</p>"
            f"<p><b>Model:</b> {model}</p><p><b>Licences</b> (the app ships no weights):</p><ul>{rows}</ul>")
