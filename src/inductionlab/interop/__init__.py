"""Trained models in the field's formats (docs/interop.md): HuggingFace GPT-2."""
