"""Trained models in the field's formats (docs/interop.md): HuggingFace GPT-2 (hf.py), TransformerLens (tl.py)."""
